//===- moe-opt.cpp - mlir-opt with the moe dialect and passes ---------------===//
//
// Registers the moe dialect and passes next to every upstream dialect and
// pass, since the moe pipelines lower through linalg, vector, gpu and llvm.
//
//===----------------------------------------------------------------------===//

#include "MoE/IR/MoEDialect.h"
#include "moe-mlir/Pipelines/Pipelines.h"
#include "moe-mlir/Conversion/MoEToLLVM.h"
#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Transforms/BufferizableOpInterfaceImpl.h"
#include "moe-mlir/Transforms/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::moe::registerMoEPasses();
  mlir::moe::registerMoEConversionPasses();
  mlir::moe::registerMoEPipelines();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary translates kernels to LLVM IR and PTX in-process.
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<mlir::moe::MoEDialect>();
  mlir::moe::registerBufferizableOpInterfaceExternalModels(registry);
  mlir::moe::registerConvertMoEToLLVMInterface(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-mlir optimizer driver\n", registry));
}
