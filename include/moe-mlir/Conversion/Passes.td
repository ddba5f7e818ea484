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
    * dispatch: a thread per expert counts its rows; a second kernel takes
      prefix sums and places rows in token order (deterministic, as the op
      specifies, without atomics); a third gathers the token rows.
    * expert: a row-to-expert map, then the first projection with the
      activation (or SwiGLU / GLU gate) in its epilogue, then the second.
      f16/bf16 weights run on tensor cores (`nvvm.mma.sync`, m16n8k16,
      f32 accumulation) in tiles of 64 of one expert's rows by 32 columns,
      4 warps; when K % 8 == 0 each k-tile of 32 is staged in shared memory
      by a three-stage `nvgpu.device_async_copy` (cp.async) pipeline and
      fragments are read with `nvgpu.ldmatrix` (rows padded against bank
      conflicts), else fragments are loaded from global memory. f32
      weights run a SIMT kernel.
    * combine: an optional per-token gate kernel (shared-expert gate,
      MoE++ constant experts), then one thread per output element.

    With a capacity (`capacity_factor`, `expert_capacity` per group) each
    expert's owner thread admits its own assignments, slot-major and in
    token order, group by group, in the count kernel.

    Unsupported on this target so far (a clear error): quantised experts.
  }];
  let options = [
    Option<"threadsPerBlock", "threads-per-block", "int64_t",
           /*default=*/"128",
           "Threads per block of the elementwise and per-token kernels">,
    Option<"tensorCores", "tensor-cores", "bool", /*default=*/"true",
           "Use mma.sync tensor-core GEMMs for f16/bf16 experts">,
    Option<"sharedMemoryStages", "shared-memory-stages", "bool",
           /*default=*/"true",
           "Tensor-core GEMMs with K % 8 == 0 stage their operands in shared "
           "memory (three-stage cp.async pipeline, ldmatrix fragments); off: "
           "fragments loaded from global memory">,
    Option<"testMisplaceFragment", "test-misplace-fragment", "bool",
           /*default=*/"false",
           "Testing only: load the mma.sync A fragment's registers a2a3 and "
           "a4a5 swapped (a wrong fragment layout), so that a test can show "
           "the GPU executor's checks catch it">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::bufferization::BufferizationDialect",
                           "::mlir::gpu::GPUDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::LLVM::LLVMDialect",
                           "::mlir::NVVM::NVVMDialect",
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
    dropped.

    The host touches small buffers through host copies: one it fills with
    scalar stores (a bufferized `tensor.from_elements`) stays in host memory
    and is uploaded after its last store for the uses outside the host; a
    device buffer it reads with scalar loads (an expert-parallel layer's
    dispatch offsets and received counts) is downloaded into a host buffer
    before each run of loads that no other use interrupts. Addresses marked
    `moe.host_address` (the counts of an exchange, which the runtime reads
    on the host) keep host buffers and constants in host memory. Fails on
    a buffer that leaves its block, on a constant passed on by a terminator,
    and on any other host access to a buffer, which would read device memory
    from the host.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect"];
}

def MoEGPUKernelModule : Pass<"moe-gpu-kernel-module"> {
  let summary = "Give every gpu.launch without a kernel module the same one";
  let description = [{
    Sets the `module` of every `gpu.launch` that names none, so that
    `-gpu-kernel-outlining` puts its kernel into that `gpu.module` instead
    of a module of its own. The kernels that `-convert-parallel-loops-to-gpu`
    makes of a whole model's ops then share one binary with the moe
    kernels: one NVPTX compilation, one ptxas run and one module load
    rather than one per kernel. Launches naming a function keep it;
    outlining makes the names unique.
  }];
  let options = [
    Option<"moduleName", "module", "std::string", /*default=*/"\"moe_kernels\"",
           "The kernel module's symbol name">,
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def MoEGPULaunchesToLoops : Pass<"moe-gpu-launches-to-loops"> {
  let summary = "Run gpu.launch kernels as sequential host loops (testing)";
  let description = [{
    Replaces every `gpu.launch` by `scf.for` loops over its blocks and
    threads, each thread's body in a `memref.alloca_scope`. With it, the
    cuda target's kernels (`-convert-moe-to-gpu` without tensor cores)
    compile for the CPU and are checked against the float64 reference on
    machines without a GPU: their indexing, tiling, dispatch order and
    epilogues are the ones the GPU runs. Only kernels without cross-thread
    communication can run this way: a `gpu.barrier`, workgroup memory or
    an NVVM op (the tensor-core path) is an error.

    Device memory becomes host memory: `gpu.alloc`, `gpu.dealloc` and
    `gpu.memcpy` (synchronous ones, as `-moe-host-buffers-to-gpu` makes
    them) become `memref.alloc`, `memref.dealloc` and `memref.copy`, so that
    a whole cuda module (`moe-lower-to-cuda{emulate-kernels}`) runs on the
    CPU with the host code the GPU would see.
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect"];
}

def ConvertNVVMToGPUExecutor : Pass<"convert-nvvm-to-gpu-executor",
                                     "::mlir::ModuleOp"> {
  let summary = "Turn NVVM kernels into host code for the moe GPU executor";
  let description = [{
    Runs on a module holding the contents of a `gpu.module` lowered to the
    LLVM and NVVM dialects: the IR from which PTX would be generated. It
    rewrites that IR into host LLVM IR that the moe GPU executor
    (`tools/gpu-executor`, a CUDA driver over the CPU) runs with real block
    and warp semantics, one fiber per GPU thread:

    * special registers (`nvvm.read.ptx.sreg.*`) become calls of
      `moe_gpuexec_sreg`;
    * `nvvm.barrier0` / `nvvm.barrier` (barrier 0, all threads) become
      `moe_gpuexec_barrier`;
    * the warp-collective `nvvm.mma.sync` (m16n8k16, f16/bf16 operands,
      f32 or f16 accumulators), `nvvm.shfl.sync` and `nvvm.ldmatrix`
      (m8n8, b16) become calls that hand the thread's fragment registers
      to the executor, which gathers the warp's 32 lanes and computes with
      the PTX ISA's fragment layouts;
    * `nvvm.cp.async.shared.global` and its commit / wait groups become
      deferred copies completed at the wait, as the ISA allows;
    * shared memory (globals in address space 3, static and dynamic) is
      laid out in one per-block buffer the executor allocates, and every
      address space becomes the host's;
    * each kernel (`gpu.kernel`) gets an exported entry
      `__moe_gpuexec_entry_<kernel>(void **params)` that unpacks
      `cuLaunchKernel`'s parameter array and runs one thread.

    * with `check-memory` (the default), every load, store, atomic and
      memory intrinsic that does not address the thread's own stack slots
      is preceded by `moe_gpuexec_check_access(address, bytes, is_store,
      site)`: the executor fails the launch unless the bytes lie in one
      device allocation, the block's shared memory, the thread's stack or
      the image's own globals.

    Every call site of a collective or a checked access carries a number
    (`site`) by which the executor names it. An NVVM operation the
    executor does not model, inline PTX, or an `llvm.nvvm.*` intrinsic call
    is an error naming the operation.
  }];
  let options = [
    Option<"checkMemory", "check-memory", "bool", /*default=*/"true",
           "Check every global and shared memory access against the "
           "executor's allocations">,
  ];
}

def ConvertShardToMoERuntime : Pass<"convert-shard-to-moe-runtime",
                                     "::mlir::ModuleOp"> {
  let summary = "Lower shard process queries to the moe runtime";
  let description = [{
    An expert-parallel module (`-moe-shard-experts`) asks for its rank with
    `shard.process_linear_index` on its one-dimensional `shard.grid`. This
    pass turns the query into a call of the runtime's
    `moe_rt_comm_rank(ranks)`, which answers from the communicator the
    launcher installed (MPI under `mpirun`; docs/ExpertParallel.md), and
    removes the grid declarations, which nothing references afterwards.

    Upstream's `-convert-shard-to-mpi` would bind the module to one MPI
    library at compile time; going through the runtime keeps the module
    independent of the collective engine.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::func::FuncDialect"];
}

#endif // MOE_CONVERSION_PASSES_TD
