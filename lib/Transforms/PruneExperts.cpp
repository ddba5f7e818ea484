//===- PruneExperts.cpp - drop rarely used experts by a routing profile ---===//
//
// A routing profile recorded on calibration inputs says how many tokens
// each expert of each layer took. Experts that almost never run still cost
// their weights' memory (and load time, and for a deployment that pages
// weights in, the stall of paging them); dropping the least-used ones and
// letting the router choose among the rest trades a small output error for
// that memory (MC-SMoE, expert pruning in MoE compression work). Pruning
// rewrites constant weights at compile time, so the module only ever holds
// the kept experts.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "moe-mlir/Transforms/ProfileGuidedExperts.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct MoEPruneExpertsPass
    : moe::impl::MoEPruneExpertsBase<MoEPruneExpertsPass> {
  using MoEPruneExpertsBase::MoEPruneExpertsBase;

  void runOnOperation() override {
    if (failed(rewriteLayersByProfile(
            getOperation(), profile, prune, "prune",
            [&](LayerOp layer, int64_t index, const TokenCounts &counts) {
              return pruneLayer(layer, index, counts);
            })))
      signalPassFailure();
  }

  LogicalResult pruneLayer(LayerOp layer, int64_t index,
                           const TokenCounts &counts) {
    FailureOr<ArrayRef<int64_t>> tokens =
        checkLayer(layer, index, counts, prune, "prune");
    if (failed(tokens))
      return failure();
    int64_t experts =
        cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
    int64_t routeExperts = tokens->size();
    SmallVector<int64_t> dropped = leastUsedExperts(*tokens, experts, prune);
    llvm::sort(dropped);
    SmallVector<int64_t> kept;
    for (int64_t e = 0; e < routeExperts; ++e)
      if (!llvm::is_contained(dropped, e))
        kept.push_back(e);
    ArrayRef<int64_t> keptExperts =
        ArrayRef(kept).drop_back(routeExperts - experts);

    if (failed(
            selectExperts(layer, index, "prune", kept, keptExperts, "_pruned")))
      return failure();

    int64_t droppedTokens = 0, routedTokens = 0;
    for (int64_t e = 0; e < experts; ++e) {
      routedTokens += (*tokens)[e];
      if (llvm::is_contained(dropped, e))
        droppedTokens += (*tokens)[e];
    }
    InFlightDiagnostic remark = mlir::emitRemark(layer.getLoc())
                                << "layer " << index << ": pruned experts ";
    llvm::interleaveComma(dropped, remark);
    remark << " of " << experts << " (" << droppedTokens << " of "
           << routedTokens << " routed tokens in the profile)";
    return success();
  }
};

} // namespace
