//===- ConstantData.cpp - reading and rebuilding constant weights ---------===//

#include "moe-mlir/Transforms/ConstantData.h"
#include "moe-mlir/Support/LargeBuffer.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Threading.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/ErrorHandling.h"

#include <cstring>
#include <type_traits>
#include <vector>

using namespace mlir;

std::optional<ArrayRef<char>> mlir::moe::constantBytes(ElementsAttr attr) {
  if (auto dense = dyn_cast<DenseElementsAttr>(attr))
    return dense.getRawData();
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
    if (AsmResourceBlob *blob = resource.getRawHandle().getBlob())
      return blob->getData();
  return std::nullopt;
}

std::optional<SmallVector<char>>
mlir::moe::elementBytes(ElementsAttr attr, RankedTensorType type) {
  if (!type.getElementType().isIntOrFloat() ||
      type.getElementTypeBitWidth() % 8 != 0)
    return std::nullopt;
  std::optional<ArrayRef<char>> raw = constantBytes(attr);
  if (!raw)
    return std::nullopt;
  size_t elementSize = type.getElementTypeBitWidth() / 8;
  size_t total = type.getNumElements() * elementSize;
  if (raw->size() == total)
    return SmallVector<char>(raw->begin(), raw->end());
  if (raw->size() != elementSize)
    return std::nullopt;
  SmallVector<char> bytes;
  bytes.reserve(total);
  for (int64_t i = 0, e = type.getNumElements(); i < e; ++i)
    bytes.append(raw->begin(), raw->end());
  return bytes;
}

AsmResourceBlob mlir::moe::allocateWeightBlob(size_t bytes) {
  void *buffer = ::moe::support::allocateLargeBuffer(bytes);
  if (!buffer)
    llvm::report_bad_alloc_error("out of memory for a weight's buffer");
  return AsmResourceBlob(
      MutableArrayRef<char>(static_cast<char *>(buffer), bytes),
      /*dataAlignment=*/64,
      [](void *data, size_t size, size_t) {
        ::moe::support::freeLargeBuffer(data, size);
      },
      /*dataIsMutable=*/true);
}

ElementsAttr
mlir::moe::rebuildConstant(ElementsAttr like, RankedTensorType type,
                           StringRef keySuffix,
                           function_ref<void(MutableArrayRef<char>)> fill) {
  size_t bytes = type.getNumElements() *
                 llvm::divideCeil(type.getElementTypeBitWidth(), 8);
  if (isa<DenseElementsAttr>(like)) {
    std::vector<char> data(bytes);
    fill(data);
    return DenseElementsAttr::getFromRawBuffer(type, data);
  }
  auto resource = cast<DenseResourceElementsAttr>(like);
  AsmResourceBlob blob = allocateWeightBlob(bytes);
  fill(blob.getMutableData());
  return DenseResourceElementsAttr::get(
      type, (resource.getRawHandle().getKey() + keySuffix).str(),
      std::move(blob));
}

/// `matrices` source matrices `[n, k]` of `Size`-byte elements as panels
/// `[n / width, k / steps, width, steps]`, one matrix per parallel task.
/// Elements are copied as bytes: a dense attribute's raw data need not be
/// aligned to its element.
template <size_t Size>
static void packPanels(MLIRContext *ctx, const char *source, char *packed,
                       int64_t matrices, int64_t n, int64_t k, int64_t width,
                       int64_t steps) {
  int64_t panels = n / width;
  parallelFor(ctx, 0, matrices, [&](size_t e) {
    const char *from = source + e * n * k * Size;
    char *to = packed + e * n * k * Size;
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t j = 0; j < width; ++j) {
        const char *row = from + (p * width + j) * k * Size;
        char *column = to + (p * k * width + j * steps) * Size;
        for (int64_t t = 0; t < k; ++t)
          std::memcpy(column + ((t / steps) * width * steps + t % steps) * Size,
                      row + t * Size, Size);
      }
  });
}

ElementsAttr mlir::moe::packWeightPanels(MLIRContext *ctx, ElementsAttr attr,
                                         ArrayRef<char> bytes, int64_t width,
                                         int64_t steps) {
  auto type = cast<RankedTensorType>(attr.getType());
  Type element = type.getElementType();
  int64_t rank = type.getRank();
  assert(rank >= 2 && "weights are matrices");
  int64_t n = type.getDimSize(rank - 2), k = type.getDimSize(rank - 1);
  assert(n % width == 0 && k % steps == 0 && "whole panels of whole steps");
  int64_t matrices = type.getNumElements() / (n * k);
  SmallVector<int64_t> packedShape(type.getShape().drop_back(2));
  packedShape.append({n / width, k / steps, width});
  if (steps != 1)
    packedShape.push_back(steps);
  auto packedType = RankedTensorType::get(packedShape, element);
  // Elements are moved as they are: only their size matters.
  auto pack = [&](MutableArrayRef<char> to) {
    auto packAs = [&](auto size) {
      packPanels<decltype(size)::value>(ctx, bytes.data(), to.data(), matrices,
                                        n, k, width, steps);
    };
    switch (element.getIntOrFloatBitWidth()) {
    case 8:
      return packAs(std::integral_constant<size_t, 1>());
    case 16:
      return packAs(std::integral_constant<size_t, 2>());
    case 32:
      return packAs(std::integral_constant<size_t, 4>());
    default:
      return packAs(std::integral_constant<size_t, 8>());
    }
  };
  if (auto dense = dyn_cast<DenseElementsAttr>(attr); dense && dense.isSplat())
    return dense.reshape(packedType);
  return rebuildConstant(attr, packedType, "_panels", pack);
}

void mlir::moe::releaseUnreferencedResources(Operation *root,
                                             ArrayRef<ElementsAttr> constants) {
  SmallVector<DenseResourceElementsAttr> resources;
  for (ElementsAttr constant : constants)
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant))
      resources.push_back(resource);
  if (resources.empty())
    return;
  llvm::StringSet<> referenced;
  root->walk([&](Operation *op) {
    op->getAttrDictionary().walk([&](DenseResourceElementsAttr attr) {
      referenced.insert(attr.getRawHandle().getKey());
    });
  });
  for (DenseResourceElementsAttr resource : resources)
    if (!referenced.contains(resource.getRawHandle().getKey()))
      if (auto *entry = resource.getRawHandle().getResource())
        entry->setBlob(AsmResourceBlob());
}

void mlir::moe::eraseUnusedConstants(Operation *root,
                                     ArrayRef<arith::ConstantOp> constants) {
  SmallVector<ElementsAttr> erased;
  for (arith::ConstantOp constant : constants) {
    if (!constant->use_empty())
      continue;
    erased.push_back(cast<ElementsAttr>(constant.getValue()));
    constant->erase();
  }
  releaseUnreferencedResources(root, erased);
}
