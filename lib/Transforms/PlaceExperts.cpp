//===- PlaceExperts.cpp - experts placed on ranks by a routing profile ----===//
//
// Expert parallelism gives rank r a contiguous block of each layer's
// experts (docs/ExpertParallel.md). When a few experts take most tokens
// (trained routers are skewed), a block holding several of them makes its
// rank receive most rows and compute most, and every rank waits for it.
// This pass renumbers each layer's experts, before -moe-shard-experts cuts
// the blocks, so that the block of every rank holds a similar share of the
// profile's tokens: a permutation of the constant weights, the router's
// rows and the score bias, which leaves what the layer computes unchanged.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "moe-mlir/Transforms/ProfileGuidedExperts.h"

#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPLACEEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The number of experts rank `rank` owns by the partition rule.
int64_t expertsOfRank(int64_t experts, int64_t ranks, int64_t rank) {
  return ExpertParallelAttr::getFirstExpert(experts, ranks, rank + 1) -
         ExpertParallelAttr::getFirstExpert(experts, ranks, rank);
}

/// The experts of each rank, ranks owning as many experts as the partition
/// rule gives them, chosen greedily: the most used expert first, each to
/// the least loaded rank with room left (ties to the lower rank, and the
/// lower expert first). The longest-processing-time rule: the busiest rank
/// is within 4/3 of the best possible.
SmallVector<SmallVector<int64_t>> balanceRanks(ArrayRef<int64_t> tokens,
                                               int64_t experts, int64_t ranks) {
  SmallVector<int64_t> order(experts);
  std::iota(order.begin(), order.end(), 0);
  llvm::stable_sort(
      order, [&](int64_t a, int64_t b) { return tokens[a] > tokens[b]; });
  SmallVector<SmallVector<int64_t>> owned(ranks);
  SmallVector<int64_t> load(ranks, 0);
  for (int64_t e : order) {
    int64_t best = -1;
    for (int64_t r = 0; r < ranks; ++r) {
      if (static_cast<int64_t>(owned[r].size()) <
              expertsOfRank(experts, ranks, r) &&
          (best < 0 || load[r] < load[best]))
        best = r;
    }
    owned[best].push_back(e);
    load[best] += tokens[e];
  }
  for (SmallVector<int64_t> &block : owned)
    llvm::sort(block);
  return owned;
}

/// The tokens of the busiest rank's block when rank r owns `blocks[r]`.
int64_t busiestRank(ArrayRef<int64_t> tokens,
                    ArrayRef<SmallVector<int64_t>> blocks) {
  int64_t busiest = 0;
  for (ArrayRef<int64_t> block : blocks) {
    int64_t load = 0;
    for (int64_t e : block)
      load += tokens[e];
    busiest = std::max(busiest, load);
  }
  return busiest;
}

struct MoEPlaceExpertsPass
    : moe::impl::MoEPlaceExpertsBase<MoEPlaceExpertsPass> {
  using MoEPlaceExpertsBase::MoEPlaceExpertsBase;

  void runOnOperation() override {
    if (ranks < 1) {
      getOperation().emitError()
          << "-moe-place-experts: ranks must be at least 1, got "
          << static_cast<int64_t>(ranks);
      return signalPassFailure();
    }
    if (failed(rewriteLayersByProfile(
            getOperation(), profile, ranks > 1 ? 1 : 0, "ranks",
            [&](LayerOp layer, int64_t index, const TokenCounts &counts) {
              return placeLayer(layer, index, counts);
            })))
      signalPassFailure();
  }

  LogicalResult placeLayer(LayerOp layer, int64_t index,
                           const TokenCounts &counts) {
    FailureOr<ArrayRef<int64_t>> tokens =
        checkLayer(layer, index, counts, /*removed=*/0, "place the experts of");
    if (failed(tokens))
      return failure();
    int64_t experts =
        cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
    int64_t routeExperts = tokens->size();
    SmallVector<SmallVector<int64_t>> placed =
        balanceRanks(*tokens, experts, ranks);

    SmallVector<SmallVector<int64_t>> contiguous(ranks);
    for (int64_t r = 0; r < ranks; ++r)
      llvm::append_range(
          contiguous[r],
          llvm::seq(ExpertParallelAttr::getFirstExpert(experts, ranks, r),
                    ExpertParallelAttr::getFirstExpert(experts, ranks, r + 1)));
    // A placement no better than the blocks as they are is not worth
    // renumbering for.
    int64_t contiguousLoad = busiestRank(*tokens, contiguous);
    int64_t placedLoad = busiestRank(*tokens, placed);
    if (placedLoad >= contiguousLoad) {
      placed = contiguous;
      placedLoad = contiguousLoad;
    }
    InFlightDiagnostic remark = mlir::emitRemark(layer.getLoc())
                                << "layer " << index << ": experts by rank ";
    llvm::interleave(
        placed,
        [&](ArrayRef<int64_t> block) {
          remark << "[";
          llvm::interleaveComma(block, remark);
          remark << "]";
        },
        [&] { remark << " "; });
    remark << "; busiest rank's tokens in the profile " << contiguousLoad
           << " contiguous, " << placedLoad << " placed";
    if (placed == contiguous)
      return success();

    // Expert i of the placed layer is expert order[i] of the layer; the
    // zero-computation experts stay after the FFN experts.
    SmallVector<int64_t> order;
    for (ArrayRef<int64_t> block : placed)
      llvm::append_range(order, block);
    for (int64_t e = experts; e < routeExperts; ++e)
      order.push_back(e);

    return selectExperts(layer, index, "place the experts of", order,
                         ArrayRef(order).take_front(experts), "_placed");
  }
};

} // namespace
