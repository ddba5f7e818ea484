//===- MergeExperts.cpp - fold rarely used experts into similar ones ------===//
//
// Pruning an expert sends its tokens to whatever the router ranks next.
// Merging (MC-SMoE's idea, in its simplest form) keeps some of what the
// expert did instead: each of the least-used experts of a layer is folded
// into the kept expert whose router row is most like its own (the expert
// that its tokens' scores already favour), and the group's weights, router
// rows and score biases become averages weighted by the tokens each expert
// took in the routing profile. A frequent expert barely moves; an expert
// merged with one of equal use becomes their mean.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Matchers.h"
#include "moe-mlir/Transforms/ConstantData.h"
#include "moe-mlir/Transforms/ProfileGuidedExperts.h"

#include <cmath>
#include <cstring>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMERGEEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Element `i` of f32 or bf16 bytes as a double.
double loadElement(ArrayRef<char> bytes, Type element, int64_t i) {
  if (element.isF32()) {
    float value;
    std::memcpy(&value, bytes.data() + 4 * i, 4);
    return value;
  }
  uint16_t half;
  std::memcpy(&half, bytes.data() + 2 * i, 2);
  uint32_t bits = uint32_t(half) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

/// Stores `value` as element `i` of f32 or bf16 (rounded to nearest even)
/// bytes.
void storeElement(MutableArrayRef<char> bytes, Type element, int64_t i,
                  double value) {
  float single = static_cast<float>(value);
  if (element.isF32()) {
    std::memcpy(bytes.data() + 4 * i, &single, 4);
    return;
  }
  uint32_t bits;
  std::memcpy(&bits, &single, 4);
  uint16_t half = std::isnan(single)
                      ? uint16_t(0x7FC0)
                      : uint16_t((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
  std::memcpy(bytes.data() + 2 * i, &half, 2);
}

/// Row r of the result is the average of `attr`'s rows `groups[r]`,
/// weighted by `weights[r]` (which sum to 1).
FailureOr<ElementsAttr> blendRows(ElementsAttr attr,
                                  ArrayRef<SmallVector<int64_t>> groups,
                                  ArrayRef<SmallVector<double>> weights) {
  auto type = cast<RankedTensorType>(attr.getType());
  Type element = type.getElementType();
  if (!element.isF32() && !element.isBF16())
    return failure();
  std::optional<ArrayRef<char>> bytes = constantBytes(attr);
  if (!bytes)
    return failure();
  SmallVector<int64_t> shape(type.getShape());
  int64_t rowElements = type.getNumElements() / shape[0];
  shape[0] = groups.size();
  auto blendedType = RankedTensorType::get(shape, element);
  auto dense = dyn_cast<DenseElementsAttr>(attr);
  bool splat = dense && dense.isSplat();
  if (splat)
    return ElementsAttr(dense.resizeSplat(blendedType));
  return rebuildConstant(
      attr, blendedType, "_merged", [&](MutableArrayRef<char> to) {
        for (auto [r, group] : llvm::enumerate(groups))
          for (int64_t i = 0; i < rowElements; ++i) {
            double sum = 0;
            for (auto [row, weight] : llvm::zip(group, weights[r]))
              sum +=
                  weight * loadElement(*bytes, element, row * rowElements + i);
            storeElement(to, element, r * rowElements + i, sum);
          }
      });
}

/// Cosine similarity of rows a and b of a [E, H] f32 or bf16 constant.
double rowCosine(ArrayRef<char> bytes, Type element, int64_t width, int64_t a,
                 int64_t b) {
  double dot = 0, normA = 0, normB = 0;
  for (int64_t i = 0; i < width; ++i) {
    double x = loadElement(bytes, element, a * width + i);
    double y = loadElement(bytes, element, b * width + i);
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  return normA > 0 && normB > 0 ? dot / std::sqrt(normA * normB) : 0;
}

struct MoEMergeExpertsPass
    : moe::impl::MoEMergeExpertsBase<MoEMergeExpertsPass> {
  using MoEMergeExpertsBase::MoEMergeExpertsBase;

  void runOnOperation() override {
    if (failed(rewriteLayersByProfile(
            getOperation(), profile, merge, "merge",
            [&](LayerOp layer, int64_t index, const TokenCounts &counts) {
              return mergeLayer(layer, index, counts);
            })))
      signalPassFailure();
  }

  LogicalResult mergeLayer(LayerOp layer, int64_t index,
                           const TokenCounts &counts) {
    FailureOr<ArrayRef<int64_t>> tokens =
        checkLayer(layer, index, counts, merge, "merge");
    if (failed(tokens))
      return failure();
    auto refuse = [&](const Twine &why) {
      return mlir::emitError(layer.getLoc())
             << "cannot merge layer " << index << ": " << why;
    };
    SmallVector<ExpertOperand> operands = expertOperands(layer);
    SmallVector<ElementsAttr> values;
    for (ExpertOperand entry : operands) {
      ElementsAttr value;
      if (!matchPattern(entry.operand->get(), m_Constant(&value)))
        return refuse("its weights must be constants");
      Type element = value.getElementType();
      if (!element.isF32() && !element.isBF16()) {
        std::string name;
        llvm::raw_string_ostream(name) << element;
        return refuse("merging averages f32 or bf16 weights, not " + name);
      }
      values.push_back(value);
    }
    int64_t experts =
        cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
    int64_t routeExperts = tokens->size();
    SmallVector<int64_t> merged = leastUsedExperts(*tokens, experts, merge);
    SmallVector<int64_t> kept;
    for (int64_t e = 0; e < experts; ++e)
      if (!llvm::is_contained(merged, e))
        kept.push_back(e);

    // Each merged expert joins the kept expert with the most similar
    // router row (ties: the lower index).
    ElementsAttr router = values.front();
    std::optional<ArrayRef<char>> routerBytes = constantBytes(router);
    if (!routerBytes)
      return refuse("the data of its router weight is not available");
    int64_t width = cast<RankedTensorType>(router.getType()).getDimSize(1);
    SmallVector<SmallVector<int64_t>> groups;
    for (int64_t e : kept)
      groups.push_back({e});
    bool splatRouter = isa<DenseElementsAttr>(router) &&
                       cast<DenseElementsAttr>(router).isSplat();
    for (int64_t e : merged) {
      int64_t best = 0;
      double bestCosine = -2;
      for (auto [g, k] : llvm::enumerate(kept)) {
        double cosine =
            splatRouter
                ? 1.0
                : rowCosine(*routerBytes, router.getElementType(), width, e, k);
        if (cosine > bestCosine) {
          bestCosine = cosine;
          best = g;
        }
      }
      groups[best].push_back(e);
    }
    // Weights by use; a group no token chose averages evenly.
    SmallVector<SmallVector<double>> weights;
    for (const SmallVector<int64_t> &group : groups) {
      double total = 0;
      for (int64_t e : group)
        total += (*tokens)[e];
      SmallVector<double> w;
      for (int64_t e : group)
        w.push_back(total > 0 ? (*tokens)[e] / total : 1.0 / group.size());
      weights.push_back(w);
    }
    // The router's rows and score bias keep the zero-computation experts'
    // entries as they are.
    SmallVector<SmallVector<int64_t>> routedGroups(groups);
    SmallVector<SmallVector<double>> routedWeights(weights);
    for (int64_t z = experts; z < routeExperts; ++z) {
      routedGroups.push_back({z});
      routedWeights.push_back({1.0});
    }

    SmallVector<ElementsAttr> blended;
    for (auto [entry, value] : llvm::zip(operands, values)) {
      FailureOr<ElementsAttr> result =
          entry.routed ? blendRows(value, routedGroups, routedWeights)
                       : blendRows(value, groups, weights);
      if (failed(result))
        return refuse("the data of a weight constant is not available");
      blended.push_back(*result);
    }
    OpBuilder b(layer);
    for (auto [entry, value] : llvm::zip(operands, blended))
      entry.operand->set(arith::ConstantOp::create(b, layer.getLoc(), value));

    int64_t moved = 0, routed = 0;
    for (int64_t e = 0; e < experts; ++e) {
      routed += (*tokens)[e];
      if (llvm::is_contained(merged, e))
        moved += (*tokens)[e];
    }
    InFlightDiagnostic remark = mlir::emitRemark(layer.getLoc())
                                << "layer " << index << ": merged experts ";
    bool first = true;
    for (const SmallVector<int64_t> &group : groups)
      for (int64_t e : ArrayRef(group).drop_front()) {
        remark << (first ? "" : ", ") << e << " into " << group.front();
        first = false;
      }
    remark << " of " << experts << " (" << moved << " of " << routed
           << " routed tokens in the profile)";
    return success();
  }
};

} // namespace
