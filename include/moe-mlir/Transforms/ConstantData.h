//===- ConstantData.h - reading and rebuilding constant weights -*- C++ -*-===//
//
// Passes that rewrite constant weights at compile time (panel-major packing,
// expert pruning) read the elements' bytes of a dense or dense-resource
// constant and build a new constant of the same kind from new bytes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_CONSTANTDATA_H
#define MOE_MLIR_TRANSFORMS_CONSTANTDATA_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinAttributeInterfaces.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

#include <optional>

namespace mlir::moe {

/// The bytes of a constant's elements, laid out densely (a splat is one
/// element), or none when they are not available (an elided or missing
/// resource, an unsupported attribute).
std::optional<ArrayRef<char>> constantBytes(ElementsAttr attr);

/// Every element's bytes of a constant of `type` (whole-byte elements), a
/// splat repeated; none when they are not available or of another size.
std::optional<SmallVector<char>> elementBytes(ElementsAttr attr,
                                              RankedTensorType type);

/// A mutable blob of `bytes` zeroed bytes, 64-byte aligned, for a weight
/// written once from start to end: mapped with huge pages from 2 MiB
/// (moe-mlir/Support/LargeBuffer.h says why), freed with the blob.
AsmResourceBlob allocateWeightBlob(size_t bytes);

/// A constant of `type` of the same kind as `like`: dense elements, or a
/// dense resource named after `like`'s with `keySuffix`; `fill` writes its
/// elements' bytes (the byte size of `type`'s elements) in row-major order.
ElementsAttr rebuildConstant(ElementsAttr like, RankedTensorType type,
                             StringRef keySuffix,
                             function_ref<void(MutableArrayRef<char>)> fill);

/// `attr` (whose elements' bytes are `bytes`) stored panel-major: weights
/// `[..., N, K]` out-major (a matmul's `[N, K]`, or experts' `[E, N, K]`)
/// become `[..., N / P, K / S, P, S]` for `width` P and `steps` S of k per
/// panel row (stored `[..., N / P, K, P]` when S is 1): element
/// `[..., p, t, j, r]` is the source's `[..., p * P + j, t * S + r]`. Each
/// panel is then the `[K, P]` matrix the CPU's outer-product kernel reads
/// along its columns. N must be a multiple of P and K of S. Leading
/// matrices are packed in parallel; the result is of `attr`'s kind.
ElementsAttr packWeightPanels(MLIRContext *ctx, ElementsAttr attr,
                              ArrayRef<char> bytes, int64_t width,
                              int64_t steps);

/// Releases the blobs of the dense resources among `constants` that no
/// attribute under `root` refers to any more: a rewritten model's old
/// weights would otherwise be held beside the new ones until the end.
void releaseUnreferencedResources(Operation *root,
                                  ArrayRef<ElementsAttr> constants);

/// Erases those of `constants` that nothing reads any more (a pass has
/// replaced them), then releases their resource blobs where no op under
/// `root` refers to them.
void eraseUnusedConstants(Operation *root,
                          ArrayRef<arith::ConstantOp> constants);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_CONSTANTDATA_H
