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

#include <cmath>
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

/// Tokens that chose both of experts `a` and `b` in the profile.
int64_t pairCount(ArrayRef<int64_t> coactivation, int64_t routeExperts,
                  int64_t a, int64_t b) {
  return coactivation[a * routeExperts + b];
}

/// The rows a layer sends with a row per token and rank (-moe-decompose-layer
/// ep-dispatch=rank) when rank r owns `blocks[r]`, estimated from the
/// profile's pairs: a block's tokens less the pairs inside it. Exact for
/// k <= 2; for larger k a token whose block holds three or more of its
/// experts is subtracted too often (a lower bound).
int64_t sentRows(ArrayRef<int64_t> tokens, ArrayRef<int64_t> coactivation,
                 ArrayRef<SmallVector<int64_t>> blocks) {
  int64_t rows = 0;
  for (ArrayRef<int64_t> block : blocks)
    for (auto [i, e] : llvm::enumerate(block)) {
      rows += tokens[e];
      for (int64_t f : block.drop_front(i + 1))
        rows -= pairCount(coactivation, tokens.size(), e, f);
    }
  return rows;
}

/// `blocks` improved by swapping experts between blocks (which keeps their
/// sizes), best swap first, for as long as a swap moves more co-activated
/// pairs into blocks than out of them (fewer rows with a row per token and
/// rank) without any block's tokens exceeding `bound`, at most 16 swaps per
/// expert.
void groupCoactivated(ArrayRef<int64_t> tokens, ArrayRef<int64_t> coactivation,
                      SmallVector<SmallVector<int64_t>> &blocks,
                      int64_t bound) {
  int64_t numBlocks = blocks.size();
  int64_t routeExperts = tokens.size();
  // blockOf[e], load[b], and pairsWith[e * numBlocks + b]: the pairs of e
  // with the experts of block b.
  SmallVector<int64_t> blockOf(routeExperts, -1);
  SmallVector<int64_t> load(numBlocks, 0);
  for (auto [b, block] : llvm::enumerate(blocks))
    for (int64_t e : block) {
      blockOf[e] = b;
      load[b] += tokens[e];
    }
  SmallVector<int64_t> experts;
  for (SmallVector<int64_t> &block : blocks)
    llvm::append_range(experts, block);
  SmallVector<int64_t> pairsWith(routeExperts * numBlocks, 0);
  for (int64_t e : experts)
    for (int64_t f : experts)
      pairsWith[e * numBlocks + blockOf[f]] +=
          pairCount(coactivation, routeExperts, e, f);

  // Each swap gains at least one pair, so the search ends; the cap keeps a
  // profile of many tokens from taking long (a few swaps per expert is
  // where it settles in practice).
  for (int64_t swaps = 0, limit = 16 * routeExperts; swaps < limit; ++swaps) {
    int64_t bestGain = 0, bestE = -1, bestF = -1;
    for (int64_t e : experts)
      for (int64_t f : experts) {
        int64_t a = blockOf[e], b = blockOf[f];
        if (a >= b)
          continue;
        int64_t delta = tokens[f] - tokens[e];
        if (load[a] + delta > bound || load[b] - delta > bound)
          continue;
        int64_t pair = pairCount(coactivation, routeExperts, e, f);
        int64_t gain = (pairsWith[f * numBlocks + a] - pair) -
                       pairsWith[e * numBlocks + a] +
                       (pairsWith[e * numBlocks + b] - pair) -
                       pairsWith[f * numBlocks + b];
        if (gain > bestGain) {
          bestGain = gain;
          bestE = e;
          bestF = f;
        }
      }
    if (bestE < 0)
      break;
    int64_t a = blockOf[bestE], b = blockOf[bestF];
    for (int64_t g : experts) {
      int64_t moved = pairCount(coactivation, routeExperts, g, bestE) -
                      pairCount(coactivation, routeExperts, g, bestF);
      pairsWith[g * numBlocks + a] -= moved;
      pairsWith[g * numBlocks + b] += moved;
    }
    load[a] += tokens[bestF] - tokens[bestE];
    load[b] += tokens[bestE] - tokens[bestF];
    blockOf[bestE] = b;
    blockOf[bestF] = a;
    *llvm::find(blocks[a], bestE) = bestF;
    *llvm::find(blocks[b], bestF) = bestE;
  }
  for (SmallVector<int64_t> &block : blocks)
    llvm::sort(block);
  // Blocks of one size can go to any of their ranks: the one with the
  // lower experts first, which renumbers least.
  llvm::stable_sort(blocks, [](ArrayRef<int64_t> x, ArrayRef<int64_t> y) {
    if (x.size() != y.size() || x.empty())
      return x.size() > y.size();
    return x.front() < y.front();
  });
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
    if (!(tolerance >= 0.0)) {
      getOperation().emitError()
          << "-moe-place-experts: tolerance must be at least 0, got "
          << static_cast<double>(tolerance);
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
    ArrayRef<int64_t> coactivation = counts.at(index).coactivation;
    if (coactivated && coactivation.empty())
      return mlir::emitError(layer.getLoc())
             << "cannot place the experts of layer " << index
             << " by co-activation: the routing profile has no "
                "'coactivation' for it";
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
    int64_t contiguousRows = 0, placedRows = 0;
    if (coactivated) {
      // Balance first: the busiest block may take `tolerance` more tokens
      // than in the balanced placement. Within that, co-activated experts
      // are grouped from the balanced placement and, when they are within
      // it, from the contiguous blocks; the fewer rows win.
      int64_t bound = static_cast<int64_t>(
          std::floor(static_cast<double>(placedLoad) * (1.0 + tolerance)));
      contiguousRows = sentRows(*tokens, coactivation, contiguous);
      groupCoactivated(*tokens, coactivation, placed, bound);
      placedLoad = busiestRank(*tokens, placed);
      placedRows = sentRows(*tokens, coactivation, placed);
      if (contiguousLoad <= bound) {
        SmallVector<SmallVector<int64_t>> regrouped = contiguous;
        groupCoactivated(*tokens, coactivation, regrouped, bound);
        int64_t rows = sentRows(*tokens, coactivation, regrouped);
        int64_t load = busiestRank(*tokens, regrouped);
        if (rows < placedRows || (rows == placedRows && load < placedLoad)) {
          placed = regrouped;
          placedRows = rows;
          placedLoad = load;
        }
      }
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
    if (coactivated)
      remark << "; rows sent per token and rank " << contiguousRows
             << " contiguous, " << placedRows << " placed";
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
