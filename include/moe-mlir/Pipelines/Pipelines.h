//===- Pipelines.h - moe-mlir lowering pipelines ----------------*- C++ -*-===//

#ifndef MOE_MLIR_PIPELINES_PIPELINES_H
#define MOE_MLIR_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <string>

namespace mlir {
class OpPassManager;

namespace moe {

struct CPUPipelineOptions : public PassPipelineOptions<CPUPipelineOptions> {
  PassOptions::Option<bool> exportABI{
      *this, "export-abi",
      llvm::cl::desc("Record the module manifest and emit the runtime entry "
                     "points (needed for moe-compile's .so)"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> gemmRowTile{
      *this, "gemm-row-tile",
      llvm::cl::desc("Rows of C per register block of the expert GEMMs"),
      llvm::cl::init(3)};
  PassOptions::Option<int64_t> gemmColTile{
      *this, "gemm-col-tile",
      llvm::cl::desc("Columns of C per register block of the expert GEMMs"),
      llvm::cl::init(8)};
  PassOptions::Option<int64_t> vectorBits{
      *this, "vector-bits",
      llvm::cl::desc("Vector register width in bits (512 for AVX-512)"),
      llvm::cl::init(512)};
};

/// moe (tensor level) -> LLVM dialect for the host CPU: decomposition,
/// bufferization (which lowers the moe stage ops), caller-allocated results,
/// deallocation, and conversion of everything to the LLVM dialect.
void buildCPULoweringPipeline(OpPassManager &pm,
                              const CPUPipelineOptions &options);

/// Registers `moe-lower-to-llvm-cpu` with the pass registry.
void registerMoEPipelines();

} // namespace moe
} // namespace mlir

#endif // MOE_MLIR_PIPELINES_PIPELINES_H
