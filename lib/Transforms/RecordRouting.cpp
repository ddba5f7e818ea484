//===- RecordRouting.cpp - routes reported to the routing profile ---------===//
//
// What a model's routers do on real inputs (how many tokens each expert
// gets, which experts are chosen together) is the input for placing,
// pruning and prefetching experts. A module compiled for profiling reports
// every route's choices to the runtime, which counts them when
// `moe-run --routing-profile` asks it to (docs/RoutingProfiles.md).
//
// Pre-gating: prefetching layer L + 1's experts while layer L computes
// needs a guess of L + 1's choice before its input exists. The usual guess
// is L + 1's router run on L's input (the residual stream changes little
// from layer to layer); reporting that guess next to the real choice lets
// the profile say how good it is on the model's own data.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/Matchers.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERECORDROUTING
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// `value` usable at `builder`'s insertion point: itself where it
/// dominates it, a copy of it when it is a constant, else null.
Value availableAt(OpBuilder &builder, DominanceInfo &dominance, Value value,
                  Operation *user) {
  if (!value || dominance.properlyDominates(value, user))
    return value;
  Operation *def = value.getDefiningOp();
  if (!def || !matchPattern(value, m_Constant()))
    return {};
  return builder.clone(*def)->getResult(
      cast<OpResult>(value).getResultNumber());
}

/// After `current` (and its report), `next`'s router run on `current`'s
/// tokens, reported as a prediction of layer `nextLayer`; nothing when the
/// routes do not both take their router weight, or when `next`'s weight or
/// bias are not available there.
void recordPrediction(OpBuilder &builder, DominanceInfo &dominance,
                      RouteOp current, RouteOp next, int64_t nextLayer) {
  if (!current.getRouterWeight() || !next.getRouterWeight())
    return;
  Value tokens = current.getInput();
  auto tokensType = cast<RankedTensorType>(tokens.getType());
  auto nextTokensType = cast<RankedTensorType>(next.getInput().getType());
  if (tokensType.getElementType() != nextTokensType.getElementType() ||
      tokensType.getDimSize(1) != nextTokensType.getDimSize(1))
    return;
  Value weight =
      availableAt(builder, dominance, next.getRouterWeight(), current);
  Value bias = availableAt(builder, dominance, next.getBias(), current);
  if (!weight || (next.getBias() && !bias))
    return;
  // The next route's attributes (k, scoring, groups...), on these tokens.
  auto guess = cast<RouteOp>(builder.clone(*next));
  guess.getInputMutable().assign(tokens);
  guess.getRouterWeightMutable().assign(weight);
  if (bias)
    guess.getBiasMutable().assign(bias);
  for (OpResult result : guess->getResults()) {
    auto type = cast<RankedTensorType>(result.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = tokensType.getDimSize(0);
    result.setType(type.clone(shape));
  }
  RecordRoutingOp::create(builder, next.getLoc(), guess.getIds(), nextLayer,
                          next.getNumExperts(), /*predicted=*/true);
}

struct MoERecordRoutingPass
    : moe::impl::MoERecordRoutingBase<MoERecordRoutingPass> {
  using MoERecordRoutingBase::MoERecordRoutingBase;

  void runOnOperation() override {
    getOperation()->walk([&](func::FuncOp func) {
      // A function's routes in order are its layers in order.
      SmallVector<RouteOp> routes;
      func.walk([&](RouteOp route) { routes.push_back(route); });
      DominanceInfo dominance(func);
      for (auto [layer, route] : llvm::enumerate(routes)) {
        OpBuilder b(route);
        b.setInsertionPointAfter(route);
        auto record = RecordRoutingOp::create(b, route.getLoc(), route.getIds(),
                                              layer, route.getNumExperts());
        if (preGating && layer + 1 < routes.size()) {
          b.setInsertionPointAfter(record);
          recordPrediction(b, dominance, route, routes[layer + 1], layer + 1);
        }
      }
    });
  }
};

} // namespace
