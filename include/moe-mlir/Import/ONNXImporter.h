//===- ONNXImporter.h - ONNX models into the moe dialect --------*- C++ -*-===//

#ifndef MOE_MLIR_IMPORT_ONNXIMPORTER_H
#define MOE_MLIR_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/CommandLine.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::moe {

struct ImportOptions {
  /// Rewrite MoE blocks spelled out in standard ops (per-expert branches,
  /// the dense tiled form, gathered per-token weights) into moe ops.
  bool raise = true;
  /// When set, one line per raised block (what matched, experts, top-k,
  /// activation) is written here.
  llvm::raw_ostream *raisingLog = nullptr;
  /// Initializers of at least this many bytes (the weights) become dense
  /// resource blobs: their bytes are never copied into the context, and
  /// blobs the import stops using (a weight stored transposed, experts
  /// stacked) are freed during the import. Smaller ones stay inline
  /// DenseElementsAttrs, which folding and shape inference read.
  uint64_t resourceMinBytes = 16 * 1024;
};

/// Reads the ONNX model at `path` (protobuf, external-data tensors resolved
/// relative to the model's folder) into a module with one public function
/// named after the graph: graph inputs that are not initializers become
/// arguments (symbolic dimensions stay dynamic), initializers become
/// constants, graph outputs the results. Reports every problem as an error
/// diagnostic naming the file, node and op, and returns null.
OwningOpRef<ModuleOp> importONNXModel(StringRef path, MLIRContext *context,
                                      const ImportOptions &options = {});

/// Registers the importer's command-line options (--print-raising,
/// --no-raise) for tools that read ONNX; call before parsing options.
void registerONNXImportCLOptions();
/// Their category, for tools that list only their own options in --help.
llvm::cl::OptionCategory &getONNXImportOptionCategory();
/// The options registered above as the command line set them (raising log
/// to stderr with --print-raising).
ImportOptions getONNXImportCLOptions();

} // namespace mlir::moe

#endif // MOE_MLIR_IMPORT_ONNXIMPORTER_H
