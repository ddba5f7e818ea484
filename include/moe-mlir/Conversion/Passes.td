//===- Passes.td - moe-mlir conversion passes --------------*- tablegen -*-===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertMoEToGPU : Pass<"convert-moe-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower the moe stage ops to GPU kernels on device buffers";
  let description = [{
    Runs on tensor-level IR after `-moe-decompose-layer`, in place of the CPU
    lowering that bufferizing the stage ops performs. Each `moe.route`,
    `moe.dispatch`, `moe.expert` and `moe.combine` becomes `gpu.launch`
    kernels over buffers: operands are taken with read-only
    `bufferization.to_buffer`, results are fresh `memref.alloc`s returned
    through `bufferization.to_tensor restrict writable`, so that one-shot
    bufferization then treats the kernels as opaque producers.

    * route: one thread per token, running the same per-token code as the
      CPU backend (scores, group limit, top-k, top-p, renormalisation).
    * dispatch: one block of E + 1 threads counts each expert's rows, takes
      prefix sums in workgroup memory and places rows in token order
      (deterministic, as the op specifies); a second kernel gathers the
      token rows.
    * expert: a row-to-expert map, then the first projection with the
      activation (or SwiGLU / GLU gate) in its epilogue, then the second.
      f16/bf16 weights run on tensor cores (`nvgpu.mma.sync`, m16n8k16,
      f32 accumulation) in 64x64 tiles of one expert's rows; f32 weights
      run a SIMT kernel.
    * combine: an optional per-token gate kernel (shared-expert gate,
      MoE++ constant experts), then one thread per output element.

    Unsupported on this target so far (a clear error): capacity-limited
    dispatch, quantised experts, more than 1023 experts.
  }];
  let options = [
    Option<"threadsPerBlock", "threads-per-block", "int64_t",
           /*default=*/"128",
           "Threads per block of the elementwise and per-token kernels">,
    Option<"tensorCores", "tensor-cores", "bool", /*default=*/"true",
           "Use mma.sync tensor-core GEMMs for f16/bf16 experts">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::bufferization::BufferizationDialect",
                           "::mlir::gpu::GPUDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::vector::VectorDialect"];
}

def MoEHostBuffersToGPU : Pass<"moe-host-buffers-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Put the host code's buffers in device memory";
  let description = [{
    Runs after bufferization and the mapping of every loop nest to GPU
    kernels, when host functions only allocate, copy and launch. Function
    arguments of a cuda module are device pointers (docs/Runtime.md), so
    every buffer the host code creates must be device memory too:
    `memref.alloc` becomes `gpu.alloc`, freed by a `gpu.dealloc` at the end
    of its block (the upstream buffer-deallocation pipeline rejects GPU
    ops, which declare no memory effects; host code here is straight-line,
    and the stream orders the free after the kernels), `memref.copy`
    becomes `gpu.memcpy`, and a `memref.get_global` (constant weights) is
    uploaded into a fresh device buffer. Existing `memref.dealloc`s are
    dropped. Fails on a buffer that leaves its block, and on any other host
    access to a buffer (a load or store outside a kernel), which would read
    device memory from the host.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect"];
}

#endif // MOE_CONVERSION_PASSES_TD
