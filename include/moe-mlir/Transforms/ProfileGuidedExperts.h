//===- ProfileGuidedExperts.h - experts chosen by a profile -----*- C++ -*-===//
//
// What -moe-prune-experts and -moe-merge-experts share: reading a routing
// profile's tokens per expert (docs/RoutingProfiles.md), checking that a
// layer can lose experts, ordering its experts by use, and finding every
// operand that holds one entry per expert.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_PROFILEGUIDEDEXPERTS_H
#define MOE_MLIR_TRANSFORMS_PROFILEGUIDEDEXPERTS_H

#include "MoE/IR/MoEOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <map>
#include <vector>

namespace mlir::moe {

/// What a routing profile says of one layer: the tokens each of its
/// route's experts took and, row-major `[experts][experts]`, the tokens that
/// chose both of a pair (empty when the profile has none).
struct LayerCounts {
  std::vector<int64_t> tokens;
  std::vector<int64_t> coactivation;
};

/// The routing profile's layers by number.
using TokenCounts = std::map<int64_t, LayerCounts>;

/// The tokens per expert and co-activation counts of the routing profile
/// at `path`, or an error naming the file.
llvm::Expected<TokenCounts> readTokenCounts(StringRef path);

/// Layer `index`'s tokens per route expert, after checking that the layer
/// can lose `removed` FFN experts at compile time: the profile has the
/// layer with the layer's number of route experts; the layer is not
/// expert-parallel nor group-limited, keeps at least k experts, takes its
/// router as a weight. Errors say "cannot <action> layer <index>: why".
FailureOr<ArrayRef<int64_t>> checkLayer(LayerOp layer, int64_t index,
                                        const TokenCounts &counts,
                                        int64_t removed, StringRef action);

/// `attr` with only the `rows` entries of its leading dimension, in that
/// order (a dense resource gets `keySuffix`); failure when its data is not
/// available.
FailureOr<ElementsAttr> selectLeading(ElementsAttr attr, ArrayRef<int64_t> rows,
                                      StringRef keySuffix);

/// Replaces every operand of `layer` that holds one entry per expert
/// (expertOperands) with a constant of the given entries of its leading
/// dimension, in order: `routeRows` for the router's rows and score bias,
/// `ffnRows` for the expert-stacked weights. Changes nothing and fails,
/// with "cannot <action> layer <index>: why", when one of them is not a
/// constant whose data is available.
LogicalResult selectExperts(LayerOp layer, int64_t index, StringRef action,
                            ArrayRef<int64_t> routeRows,
                            ArrayRef<int64_t> ffnRows, StringRef keySuffix);

/// The `n` FFN experts (of `experts`) that took the fewest tokens, ties
/// taking the higher index first, in increasing order of use.
SmallVector<int64_t> leastUsedExperts(ArrayRef<int64_t> tokens, int64_t experts,
                                      int64_t n);

/// An operand of a layer with one entry per expert along dimension 0: per
/// FFN expert (weights, biases, scales, zero points) or per route expert
/// (`routed`: the router weight and the score bias, whose entries from the
/// FFN experts' count on are the zero-computation experts').
struct ExpertOperand {
  OpOperand *operand;
  bool routed;
};
SmallVector<ExpertOperand> expertOperands(LayerOp layer);

/// What -moe-prune-experts and -moe-merge-experts run: nothing for a
/// `count` of 0, an error for a negative one (named `option`); otherwise
/// reads `profile` and calls `rewrite` on every moe.layer of `module` with
/// its index among its function's layers (the profile's layer numbers) and
/// the profile's counts, stopping at the first failure.
LogicalResult rewriteLayersByProfile(
    ModuleOp module, StringRef profile, int64_t count, StringRef option,
    function_ref<LogicalResult(LayerOp, int64_t, const TokenCounts &)> rewrite);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_PROFILEGUIDEDEXPERTS_H
