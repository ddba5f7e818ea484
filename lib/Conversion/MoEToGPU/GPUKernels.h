//===- GPUKernels.h - helpers for the moe GPU kernels -----------*- C++ -*-===//
//
// Shared by the stage-op patterns (MoEToGPU.cpp) and the expert GEMM
// kernels (ExpertKernels.cpp): launching a kernel over a grid with a
// guarded body, and the expert kernels' entry point.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_CONVERSION_MOETOGPU_GPUKERNELS_H
#define MOE_MLIR_LIB_CONVERSION_MOETOGPU_GPUKERNELS_H

#include "MoE/IR/MoEOps.h"
#include "moe-mlir/Transforms/KernelEmitter.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::moe::gpu_kernels {

/// The ids and sizes a kernel body sees.
struct LaunchIds {
  Value blockX, blockY, threadX;
  Value blockDimX;
  /// The block's shared memory: one buffer per workgroup type given.
  SmallVector<Value> workgroup;
};

/// The gpu.module every moe kernel is outlined into (one module to load).
constexpr llvm::StringLiteral kKernelModule = "moe_kernels";

/// Emits a `gpu.launch` named `name` (the outlined kernel's name in
/// `kKernelModule`) of grid (gridX, gridY) and block (blockX, blockY,
/// static). Empty grids (a dynamic size of 0) launch one block instead, as
/// CUDA rejects empty grids; bodies guard their ranges themselves.
/// `workgroup` lists the types of the block's shared-memory buffers (memrefs
/// in the workgroup address space).
gpu::LaunchOp
launch(ImplicitLocOpBuilder &b, StringRef name, Value gridX, Value gridY,
       int64_t blockX, int64_t blockY,
       function_ref<void(KernelEmitter &, const LaunchIds &)> body,
       TypeRange workgroup = {});

/// A thread per item `i` in [0, n), in blocks of `threads`; `body` runs for
/// the items in range only.
void launchPerItem(ImplicitLocOpBuilder &b, StringRef name, Value n,
                   int64_t threads,
                   function_ref<void(KernelEmitter &, Value i)> body);

/// A block per row `r` in [0, rows) and a thread per column `c` in
/// [0, cols), `threads` columns per block (grid y); `body` runs for the
/// elements in range only.
void launchPerElement(
    ImplicitLocOpBuilder &b, StringRef name, Value rows, Value cols,
    int64_t threads,
    function_ref<void(KernelEmitter &, Value r, Value c)> body);

/// ceil(n / d) for a non-negative index `n`.
Value ceilDiv(KernelEmitter &e, Value n, int64_t d);

/// The buffers of one moe.expert.
struct ExpertBuffers {
  Value rows, offsets, fc1, fc1Bias, fc2, fc2Bias, fc3, fc3Bias;
  Value result;
};

struct ExpertKernelOptions {
  int64_t threadsPerBlock = 128;
  bool tensorCores = true;
  /// Operands staged in shared memory (cp.async, ldmatrix) where K allows.
  bool sharedMemoryStages = true;
  /// Testing: a wrong A fragment layout (registers 1 and 2 swapped).
  bool testMisplaceFragment = false;
};

/// Emits the kernels computing `expert` on device buffers into `buffers`
/// (result allocated by the caller).
LogicalResult emitExpertKernels(ImplicitLocOpBuilder &b, ExpertOp expert,
                                const ExpertBuffers &buffers,
                                const ExpertKernelOptions &options);

} // namespace mlir::moe::gpu_kernels

#endif // MOE_MLIR_LIB_CONVERSION_MOETOGPU_GPUKERNELS_H
