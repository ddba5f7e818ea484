//===- GPUExecutorImage.cpp - kernels built for the moe GPU executor ------===//
//
// With `--gpu-binary=executor` a cuda module embeds, in place of PTX or a
// cubin, a host shared object of its kernels for the moe GPU executor
// (tools/gpu-executor), a CUDA driver that runs kernels on the CPU. The
// host code is the cuda module's own: it loads the image through
// mgpuModuleLoad and launches kernels through mgpuLaunchKernel, as on a
// GPU; only the driver underneath differs.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/Compiler.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace mlir;

/// The executor image of one lowered gpu.module: its kernels through
/// -convert-nvvm-to-gpu-executor, compiled for the host and linked into a
/// shared object, whose bytes are returned.
static FailureOr<std::string> buildImage(gpu::GPUModuleOp kernels,
                                         const moe::CompileOptions &options,
                                         llvm::TargetMachine &machine,
                                         TimingScope &timing,
                                         std::string &error) {
  OwningOpRef<ModuleOp> image = ModuleOp::create(kernels.getLoc());
  OpBuilder b(kernels.getContext());
  b.setInsertionPointToEnd(image->getBody());
  for (Operation &op : kernels.getBody()->without_terminator())
    b.clone(op);
  {
    TimingScope scope = timing.nest("Kernels for the GPU executor");
    PassManager pm(kernels.getContext());
    pm.addPass(moe::createConvertNVVMToGPUExecutor());
    pm.enableTiming(scope);
    if (failed(pm.run(*image))) {
      error = "cannot build the GPU executor's kernels of '" +
              kernels.getName().str() + "'";
      return failure();
    }
  }
  llvm::LLVMContext context;
  std::unique_ptr<llvm::Module> module = moe::translateAndOptimize(
      *image, context, machine, options.optLevel, timing);
  if (!module) {
    error = "cannot translate the kernels of '" + kernels.getName().str() +
            "' to LLVM IR";
    return failure();
  }
  SmallString<128> objectPath, imagePath;
  if (llvm::sys::fs::createTemporaryFile("moe-gpuexec", "o", objectPath) ||
      llvm::sys::fs::createTemporaryFile("moe-gpuexec", "so", imagePath)) {
    error = "cannot create temporary files for the GPU executor's kernels";
    return failure();
  }
  llvm::FileRemover removeObject(objectPath), removeImage(imagePath);
  TimingScope scope = timing.nest("Link the GPU executor's kernels");
  if (failed(moe::emitObjectFile(*module, machine, objectPath, error)) ||
      failed(moe::linkExecutorImage(objectPath.str().str(), imagePath, options,
                                    error)))
    return failure();
  auto bytes = llvm::MemoryBuffer::getFile(imagePath, /*IsText=*/false);
  if (!bytes) {
    error = "cannot read '" + imagePath.str().str() +
            "': " + bytes.getError().message();
    return failure();
  }
  return (*bytes)->getBuffer().str();
}

LogicalResult moe::buildGPUExecutorImages(ModuleOp module,
                                          const CompileOptions &options,
                                          llvm::TargetMachine &machine,
                                          TimingScope &timing,
                                          std::string &error) {
  for (auto kernels :
       llvm::to_vector(module.getBody()->getOps<gpu::GPUModuleOp>())) {
    FailureOr<std::string> bytes =
        buildImage(kernels, options, machine, timing, error);
    if (failed(bytes))
      return failure();
    ArrayAttr targets = kernels.getTargetsAttr();
    if (!targets || targets.empty()) {
      error = "gpu.module '" + kernels.getName().str() + "' has no target";
      return failure();
    }
    // A "bin" object: the host code loads it with mgpuModuleLoad, whose
    // driver call (cuModuleLoadData) the executor answers.
    MLIRContext *ctx = module.getContext();
    auto object =
        gpu::ObjectAttr::get(ctx, targets[0], gpu::CompilationTarget::Binary,
                             StringAttr::get(ctx, *bytes),
                             /*properties=*/nullptr,
                             /*kernels=*/nullptr);
    OpBuilder b(kernels);
    gpu::BinaryOp::create(b, kernels.getLoc(), kernels.getName(),
                          /*offloadingHandler=*/nullptr,
                          ArrayRef<Attribute>{object});
    kernels.erase();
  }
  return success();
}
