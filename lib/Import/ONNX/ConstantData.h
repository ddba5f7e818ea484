//===- ConstantData.h - Constant tensors inline or in resource blobs -*- C++ -*-===//
//
// Weights are most of a model's bytes. A DenseElementsAttr copies its data
// into the MLIRContext, where it stays until the context dies, and every
// copy made at import (a transposed MatMul weight, experts stacked into one
// tensor, gate and up rows interleaved) would stay beside it. Large
// constants are therefore dense resource blobs (DenseResourceElementsAttr):
// the blob takes the protobuf's bytes without a copy, and a blob nothing
// reads any more is freed as soon as that is known. The helpers here read
// and build constants of either kind, so that the importers need not care.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_CONSTANTDATA_H
#define MOE_MLIR_LIB_IMPORT_ONNX_CONSTANTDATA_H

#include "ModelFile.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/StringSet.h"

#include <string>
#include <vector>

namespace mlir::moe::onnx_import {

/// The contents of a constant tensor whose elements are whole bytes.
struct ConstantData {
  ElementsAttr attr;
  RankedTensorType type;
  /// Every element in row-major order, or a single one when `splat`.
  ArrayRef<char> bytes;
  bool splat = false;

  size_t elementBytes() const { return type.getElementTypeBitWidth() / 8; }
  /// The bytes of element `i` (row-major).
  const char *element(int64_t i) const {
    return bytes.data() + (splat ? 0 : i * elementBytes());
  }
  /// Whether the data lives in a resource blob (and new constants derived
  /// from it should too).
  bool isResource() const { return isa<DenseResourceElementsAttr>(attr); }
};

/// The data of `attr` when it is a DenseElementsAttr or a
/// DenseResourceElementsAttr of whole-byte elements with its blob present.
std::optional<ConstantData> getConstantData(Attribute attr);
/// The same for the attribute of the arith.constant defining `value`.
std::optional<ConstantData> getConstantData(Value value);

/// The same elements under another type of equal size and element width
/// (a reshape, or ui8 read as i8): no bytes are copied for either kind.
ElementsAttr reinterpretConstant(ElementsAttr attr, RankedTensorType type);

/// A new constant's bytes, written in place and then handed to the
/// attribute: a resource blob in the import's weight store when `store` is
/// given (on the heap if the store cannot take it), a DenseElementsAttr
/// otherwise.
class ConstantBuffer {
public:
  ConstantBuffer(RankedTensorType type, ModelFiles *store);

  MutableArrayRef<char> bytes() { return data; }
  /// The attribute holding the bytes; `name` names the blob (made unique).
  /// The buffer is spent afterwards.
  ElementsAttr take(StringRef name);

private:
  RankedTensorType type;
  ModelFiles *store;
  AsmResourceBlob blob;
  std::vector<char> inlineBytes;
  MutableArrayRef<char> data;
};

/// A resource attribute holding `bytes` (moved in, not copied).
DenseResourceElementsAttr makeResourceConstant(RankedTensorType type,
                                               StringRef name,
                                               std::string &&bytes);

/// A resource attribute over `blob` (a view of the model file).
DenseResourceElementsAttr makeResourceConstant(RankedTensorType type,
                                               StringRef name,
                                               AsmResourceBlob &&blob);

/// Frees the blob behind `attr` (a no-op for other attributes). Only for
/// attributes nothing will read again.
void releaseConstantData(ElementsAttr attr);

/// Erases `constant`, which nothing uses, and frees its blob unless another
/// constant of the same function views it (a reshape or bitcast of it).
void eraseConstant(arith::ConstantOp constant);

/// The keys of the resource blobs `context` holds.
llvm::StringSet<> resourceBlobKeys(MLIRContext *context);
/// Frees the blobs that are not in `before` and that no attribute in
/// `root` (when given) refers to: constants an import made and dropped.
void releaseUnreferencedBlobs(Operation *root, const llvm::StringSet<> &before,
                              MLIRContext *context);

/// `value` (rank >= 2, whole-byte elements) with its last two dimensions
/// swapped: how [E, in, out] weights become the dialect's [E, out, in] and
/// MatMul's [K, N] weights the GEMM kernel's [N, K]. A resource stays one
/// (in `store`).
ElementsAttr transposeInnerDims(const ConstantData &value, StringRef name,
                                ModelFiles &store);

} // namespace mlir::moe::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_CONSTANTDATA_H
