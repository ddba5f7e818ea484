//===- moe-import-onnx.cpp - ONNX models to moe-dialect MLIR ----------------===//
//
//   moe-import-onnx MODEL.onnx -o out.mlir
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/ONNXImporter.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::OptionCategory category("moe-import-onnx options");
  cl::opt<std::string> input(cl::Positional, cl::desc("<model.onnx>"),
                             cl::Required, cl::cat(category));
  cl::opt<std::string> output("o", cl::desc("Output .mlir (default: stdout)"),
                              cl::init("-"), cl::cat(category));
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  moe::registerONNXImportCLOptions();
  // --help shows our options, not LLVM's hundreds of backend flags.
  cl::HideUnrelatedOptions({&category, &moe::getONNXImportOptionCategory()});
  cl::ParseCommandLineOptions(
      argc, argv,
      "moe-mlir ONNX importer: ONNX model -> MLIR\n\n"
      "--help-hidden also lists MLIR's printing options (e.g.\n"
      "--mlir-elide-elementsattrs-if-larger) and LLVM's.\n");

  MLIRContext context;
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module = moe::importONNXModel(input, &context,
                                    moe::getONNXImportCLOptions());
  if (!module)
    return 1;
  std::string error;
  auto out = openOutputFile(output, &error);
  if (!out) {
    llvm::errs() << "moe-import-onnx: error: " << error << "\n";
    return 1;
  }
  module->print(out->os());
  out->keep();
  return 0;
}
