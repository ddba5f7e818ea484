//===- GPUKernelModule.cpp - one kernel module for all --------------------===//
//
// -gpu-kernel-outlining gives every gpu.launch without a kernel module its
// own gpu.module, and each becomes its own binary: a whole model's hundred
// elementwise and reduction kernels (from -convert-parallel-loops-to-gpu)
// were a hundred NVPTX compilations, ptxas runs and module loads. Naming
// the module the moe kernels already use puts them all in one.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUKERNELMODULE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEGPUKernelModulePass
    : moe::impl::MoEGPUKernelModuleBase<MoEGPUKernelModulePass> {
  using Base::Base;

  void runOnOperation() override {
    auto module = FlatSymbolRefAttr::get(&getContext(), moduleName);
    getOperation()->walk([&](gpu::LaunchOp launch) {
      if (!launch.getModuleAttr())
        launch.setModuleAttr(module);
    });
  }
};

} // namespace
