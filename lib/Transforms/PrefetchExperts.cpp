//===- PrefetchExperts.cpp - experts' weights read ahead ------------------===//
//
// When a model's weights do not all fit in memory, the experts a layer
// chooses are read from the module's file as the layer runs, and the layer
// waits for them. Knowing the choice early hides that wait: each layer's
// own choice is known once it is routed, before its tokens are gathered,
// and the next layer's is guessed from this layer's tokens (pre-gating,
// PreGating.h), a whole layer of compute ahead. This pass hands both to
// the runtime's expert cache as moe.prefetch_experts.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Matchers.h"
#include "moe-mlir/Transforms/PreGating.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPREFETCHEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The routed moe.expert that runs `route`'s choice: the one whose offsets
/// come from the dispatch of `route`'s ids, or of ids a linalg.generic
/// extends them to (-moe-group-shared-experts appends the shared experts'
/// slices, which come after the routed experts and which every token
/// visits anyway).
ExpertOp routedExperts(RouteOp route) {
  SmallVector<Value> ids = {route.getIds()};
  // The extension reads the ids in its body.
  for (Operation *user : route.getIds().getUsers())
    if (auto extended = user->getParentOfType<linalg::GenericOp>();
        extended && extended->getNumResults() == 1)
      ids.push_back(extended->getResult(0));
  for (Value routedIds : ids)
    for (Operation *user : routedIds.getUsers())
      if (auto dispatch = dyn_cast<DispatchOp>(user);
          dispatch && dispatch.getIds() == routedIds)
        for (Operation *offsetsUser : dispatch.getOffsets().getUsers())
          if (auto experts = dyn_cast<ExpertOp>(offsetsUser);
              experts && experts.getOffsets() == dispatch.getOffsets())
            return experts;
  return {};
}

/// The expert-stacked operands of `experts` that the module holds as
/// constants: weights whose pages live in the module's file. Arguments are
/// the caller's memory, nothing to read ahead.
SmallVector<Value> constantWeights(ExpertOp experts) {
  SmallVector<Value> weights;
  for (OpOperand *operand : experts.getExpertStackedOperands()) {
    Value weight = operand->get();
    if (cast<RankedTensorType>(weight.getType()).hasStaticShape() &&
        matchPattern(weight, m_Constant()))
      weights.push_back(weight);
  }
  return weights;
}

struct MoEPrefetchExpertsPass
    : moe::impl::MoEPrefetchExpertsBase<MoEPrefetchExpertsPass> {
  using MoEPrefetchExpertsBase::MoEPrefetchExpertsBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    SmallVector<RouteOp> routes = layerRoutes(func);
    SmallVector<SmallVector<Value>> weights =
        llvm::map_to_vector(routes, [](RouteOp route) -> SmallVector<Value> {
          ExpertOp experts = routedExperts(route);
          return experts ? constantWeights(experts) : SmallVector<Value>();
        });
    DominanceInfo dominance(func);
    for (auto [layer, route] : llvm::enumerate(routes)) {
      OpBuilder b(route);
      b.setInsertionPointAfter(route);
      if (!weights[layer].empty())
        PrefetchExpertsOp::create(b, route.getLoc(), route.getIds(),
                                  weights[layer], layer);
      if (!preGating || layer + 1 == routes.size() ||
          weights[layer + 1].empty())
        continue;
      RouteOp next = routes[layer + 1];
      RouteOp guess = buildPreGatedRoute(b, dominance, route, next);
      if (!guess)
        continue;
      // The next layer's weights are constants; one defined after this
      // point is copied (the same attribute, so bufferization gives both
      // the same global).
      SmallVector<Value> nextWeights =
          llvm::map_to_vector(weights[layer + 1], [&](Value weight) {
            return availableBefore(b, dominance, weight, guess);
          });
      PrefetchExpertsOp::create(b, next.getLoc(), guess.getIds(), nextWeights,
                                layer + 1, /*predicted=*/true);
    }
  }
};

} // namespace
