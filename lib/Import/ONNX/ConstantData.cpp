//===- ConstantData.cpp - Constant tensors inline or in resource blobs ------===//

#include "ConstantData.h"

#include "moe-mlir/Transforms/ConstantData.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// Resource keys are printed bare: letters, digits, '_' and '.' only.
std::string blobKey(StringRef name) {
  std::string key = name.empty() ? "constant" : name.str();
  for (char &c : key)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.')
      c = '_';
  return key;
}

bool wholeBytes(Type elementType) {
  return elementType.isIntOrFloat() && !elementType.isInteger(1) &&
         elementType.getIntOrFloatBitWidth() % 8 == 0;
}

/// Alignment of a blob holding elements of `type`: their size, at least 16
/// (what the vector loads of the kernels like and malloc gives anyway).
size_t blobAlignment(RankedTensorType type) {
  return std::max<size_t>(16, type.getElementTypeBitWidth() / 8);
}

} // namespace

std::optional<ConstantData>
mlir::moe::onnx_import::getConstantData(Attribute attr) {
  auto elements = dyn_cast_or_null<ElementsAttr>(attr);
  if (!elements)
    return std::nullopt;
  auto type = dyn_cast<RankedTensorType>(elements.getType());
  if (!type || !wholeBytes(type.getElementType()))
    return std::nullopt;
  ConstantData data{elements, type, {}, false};
  size_t expected = size_t(type.getNumElements()) * data.elementBytes();
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    data.bytes = dense.getRawData();
    data.splat = dense.isSplat();
    if (!data.splat && data.bytes.size() != expected)
      return std::nullopt;
    return data;
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob || blob->getData().size() != expected)
      return std::nullopt;
    data.bytes = blob->getData();
    return data;
  }
  return std::nullopt;
}

std::optional<ConstantData>
mlir::moe::onnx_import::getConstantData(Value value) {
  if (!value)
    return std::nullopt;
  Attribute attr;
  if (auto constant = value.getDefiningOp<arith::ConstantOp>())
    attr = constant.getValue();
  return getConstantData(attr);
}

ElementsAttr mlir::moe::onnx_import::reinterpretConstant(ElementsAttr attr,
                                                         RankedTensorType type) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
    return DenseResourceElementsAttr::get(type, resource.getRawHandle());
  auto dense = cast<DenseElementsAttr>(attr);
  if (dense.getElementType() != type.getElementType())
    dense = dense.bitcast(type.getElementType());
  return dense.getType() == type ? dense : dense.reshape(type);
}

ConstantBuffer::ConstantBuffer(RankedTensorType type, ModelFiles *store)
    : type(type), store(store) {
  size_t size = size_t(type.getNumElements()) * (type.getElementTypeBitWidth() / 8);
  if (store) {
    blob = allocateWeightBlob(size);
    data = blob.getMutableData();
  } else {
    inlineBytes.assign(size, 0);
    data = inlineBytes;
  }
}

ElementsAttr ConstantBuffer::take(StringRef name) {
  data = {};
  if (store) {
    // Out of memory until read: the heap copy goes when `blob` is replaced.
    if (FailureOr<AsmResourceBlob> stored = store->store(blob.getData());
        succeeded(stored))
      blob = std::move(*stored);
    return DenseResourceElementsAttr::get(type, blobKey(name), std::move(blob));
  }
  ElementsAttr attr = DenseElementsAttr::getFromRawBuffer(type, inlineBytes);
  std::vector<char>().swap(inlineBytes);
  return attr;
}

DenseResourceElementsAttr
mlir::moe::onnx_import::makeResourceConstant(RankedTensorType type,
                                             StringRef name,
                                             std::string &&bytes) {
  // The blob owns the string: the protobuf's bytes are not copied. Their
  // alignment is malloc's (16), enough for every element type.
  auto *owned = new std::string(std::move(bytes));
  AsmResourceBlob blob(
      ArrayRef<char>(owned->data(), owned->size()),
      std::min<size_t>(16, blobAlignment(type)),
      [owned](void *, size_t, size_t) { delete owned; },
      /*dataIsMutable=*/false);
  return DenseResourceElementsAttr::get(type, blobKey(name), std::move(blob));
}

DenseResourceElementsAttr
mlir::moe::onnx_import::makeResourceConstant(RankedTensorType type,
                                             StringRef name,
                                             AsmResourceBlob &&blob) {
  return DenseResourceElementsAttr::get(type, blobKey(name), std::move(blob));
}

void mlir::moe::onnx_import::releaseConstantData(ElementsAttr attr) {
  if (auto resource = dyn_cast_or_null<DenseResourceElementsAttr>(attr))
    if (auto *entry = resource.getRawHandle().getResource())
      entry->setBlob(AsmResourceBlob());
}

void mlir::moe::onnx_import::eraseConstant(arith::ConstantOp constant) {
  auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue());
  Operation *function = constant->getParentOp();
  constant->erase();
  if (!resource)
    return;
  bool shared = false;
  function->walk([&](arith::ConstantOp other) {
    if (auto view = dyn_cast<DenseResourceElementsAttr>(other.getValue()))
      shared = view.getRawHandle().getResource() ==
               resource.getRawHandle().getResource();
    return shared ? WalkResult::interrupt() : WalkResult::advance();
  });
  if (!shared)
    releaseConstantData(resource);
}

llvm::StringSet<>
mlir::moe::onnx_import::resourceBlobKeys(MLIRContext *context) {
  llvm::StringSet<> keys;
  DenseResourceElementsHandle::getManagerInterface(context)
      .getBlobManager()
      .getBlobMap([&](const llvm::StringMap<
                      DialectResourceBlobManager::BlobEntry> &blobs) {
        for (const auto &entry : blobs)
          keys.insert(entry.getKey());
      });
  return keys;
}

void mlir::moe::onnx_import::releaseUnreferencedBlobs(
    Operation *root, const llvm::StringSet<> &before, MLIRContext *context) {
  llvm::StringSet<> referenced;
  if (root)
    root->walk([&](Operation *op) {
      op->getAttrDictionary().walk([&](DenseResourceElementsAttr attr) {
        referenced.insert(attr.getRawHandle().getKey());
      });
    });
  DialectResourceBlobManager &manager =
      DenseResourceElementsHandle::getManagerInterface(context)
          .getBlobManager();
  SmallVector<std::string> unused;
  manager.getBlobMap(
      [&](const llvm::StringMap<DialectResourceBlobManager::BlobEntry> &blobs) {
        for (const auto &entry : blobs)
          if (!before.contains(entry.getKey()) &&
              !referenced.contains(entry.getKey()) && entry.second.getBlob())
            unused.push_back(entry.getKey().str());
      });
  for (const std::string &key : unused)
    manager.update(key, AsmResourceBlob());
}

ElementsAttr
mlir::moe::onnx_import::transposeInnerDims(const ConstantData &value,
                                           StringRef name, ModelFiles &store) {
  RankedTensorType type = value.type;
  int64_t rank = type.getRank();
  int64_t rows = type.getDimSize(rank - 2), cols = type.getDimSize(rank - 1);
  SmallVector<int64_t> shape(type.getShape());
  std::swap(shape[rank - 2], shape[rank - 1]);
  auto transposedType = RankedTensorType::get(shape, type.getElementType());
  if (value.splat)
    return reinterpretConstant(value.attr, transposedType);
  size_t width = value.elementBytes();
  int64_t matrix = rows * cols;
  int64_t batches = matrix != 0 ? type.getNumElements() / matrix : 0;
  ConstantBuffer transposed(transposedType,
                            value.isResource() ? &store : nullptr);
  const char *src = value.bytes.data();
  char *dst = transposed.bytes().data();
  // Blocks of rows keep both sides' cache lines in use (a weight is MBs).
  constexpr int64_t kBlock = 32;
  for (int64_t x = 0; x < batches; ++x)
    for (int64_t i0 = 0; i0 < rows; i0 += kBlock)
      for (int64_t j0 = 0; j0 < cols; j0 += kBlock)
        for (int64_t i = i0; i < std::min(rows, i0 + kBlock); ++i)
          for (int64_t j = j0; j < std::min(cols, j0 + kBlock); ++j)
            std::memcpy(dst + ((x * cols + j) * rows + i) * width,
                        src + ((x * rows + i) * cols + j) * width, width);
  return transposed.take(name);
}
