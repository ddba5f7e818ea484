//===- ConstantData.cpp - reading and rebuilding constant weights ---------===//

#include "moe-mlir/Transforms/ConstantData.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <vector>

using namespace mlir;

std::optional<ArrayRef<char>> moe::constantBytes(ElementsAttr attr) {
  if (auto dense = dyn_cast<DenseElementsAttr>(attr))
    return dense.getRawData();
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
    if (AsmResourceBlob *blob = resource.getRawHandle().getBlob())
      return blob->getData();
  return std::nullopt;
}

ElementsAttr
moe::rebuildConstant(ElementsAttr like, RankedTensorType type,
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
  AsmResourceBlob blob = HeapAsmResourceBlob::allocate(
      bytes, /*align=*/64, /*dataIsMutable=*/true);
  fill(blob.getMutableData());
  return DenseResourceElementsAttr::get(
      type, (resource.getRawHandle().getKey() + keySuffix).str(),
      std::move(blob));
}
