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
  cl::opt<std::string> input(cl::Positional, cl::desc("<model.onnx>"),
                             cl::Required);
  cl::opt<std::string> output("o", cl::desc("Output .mlir (default: stdout)"),
                              cl::init("-"));
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  moe::registerONNXImportCLOptions();
  cl::ParseCommandLineOptions(argc, argv,
                              "moe-mlir ONNX importer: ONNX model -> MLIR\n");

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
