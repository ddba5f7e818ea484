//===- ModelFile.h - ONNX files read with their weights left in place -*- C++ -*-===//
//
// A protobuf parse copies every initializer's raw_data into a string: for a
// model of a few hundred MB the weights would sit in memory twice (file and
// strings) before the import starts. The model is instead scanned in its
// mapping first: each large raw_data field is left in the file and the
// tensor rewritten to what ONNX calls external data, pointing at the model
// file itself (location, offset, length). The rest (graph, attributes,
// small constants) is parsed as usual. Every reader of initializers already
// handles external data; the importer's resource blobs view it in the
// mapping, so a weight's pages are read only when something reads it, and
// dropped again when its blob is released.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_MODELFILE_H
#define MOE_MLIR_LIB_IMPORT_ONNX_MODELFILE_H

#include "mlir/IR/AsmState.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"

#include <memory>
#include <onnx/onnx_pb.h>
#include <string>

namespace mlir::moe::onnx_import {

/// The files a model's tensors live in, mapped read-only once each, and the
/// import's weight store: a temporary file (removed at once, so it goes
/// with the process) that holds the weights the import lays out anew.
class ModelFiles {
public:
  /// Parses the ONNX model at `path` into `model`; raw_data fields of at
  /// least `minBytes` (top-level initializers) stay in the file as external
  /// data. Returns an error message on failure.
  std::optional<std::string> read(llvm::StringRef path, uint64_t minBytes,
                                  onnx::ModelProto &model);

  /// A read-only view of `length` bytes at `offset` in `file`, valid while
  /// the blob lives; releasing the blob drops its pages from memory (the
  /// file stays mapped for other views). Null data with an error message
  /// when the file cannot be mapped or is too short.
  FailureOr<AsmResourceBlob> view(llvm::StringRef file, uint64_t offset,
                                  uint64_t length, std::string &error);

  /// `bytes` (a weight the import laid out anew) moved into the weight
  /// store: a view of the store's copy, which, like a view of the model,
  /// is out of memory until read. Fails (and the caller keeps its bytes)
  /// when the store cannot be written.
  FailureOr<AsmResourceBlob> store(ArrayRef<char> bytes);

  /// Drops the pages of `bytes` from memory when they lie in one of the
  /// mapped files (read again from the file if touched again); other memory
  /// is left alone. Importers call this after copying a weight into a new
  /// layout, so that its pages do not accumulate until its blob goes.
  void evict(ArrayRef<char> bytes) const;

  ModelFiles() = default;
  ModelFiles(const ModelFiles &) = delete;
  ModelFiles &operator=(const ModelFiles &) = delete;
  ~ModelFiles();

private:
  llvm::StringMap<std::shared_ptr<llvm::sys::fs::mapped_file_region>> mappings;
  /// The weight store's descriptor (-1 until first used, -2 when it could
  /// not be created) and size.
  int storeFD = -1;
  uint64_t storeBytes = 0;

  std::shared_ptr<llvm::sys::fs::mapped_file_region>
  map(llvm::StringRef file, std::string &error);
};

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_MODELFILE_H
