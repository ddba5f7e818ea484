//===- PreGating.cpp - a layer's routing guessed a layer early ------------===//

#include "moe-mlir/Transforms/PreGating.h"

#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace mlir::moe;

Value mlir::moe::availableBefore(OpBuilder &builder, DominanceInfo &dominance,
                                 Value value, Operation *user) {
  if (!value || dominance.properlyDominates(value, user))
    return value;
  Operation *def = value.getDefiningOp();
  if (!def || !matchPattern(value, m_Constant()))
    return {};
  return builder.clone(*def)->getResult(
      cast<OpResult>(value).getResultNumber());
}

RouteOp mlir::moe::buildPreGatedRoute(OpBuilder &builder,
                                      DominanceInfo &dominance, RouteOp current,
                                      RouteOp next) {
  if (!current.getRouterWeight() || !next.getRouterWeight())
    return {};
  Value tokens = current.getInput();
  auto tokensType = cast<RankedTensorType>(tokens.getType());
  auto nextTokensType = cast<RankedTensorType>(next.getInput().getType());
  if (tokensType.getElementType() != nextTokensType.getElementType() ||
      tokensType.getDimSize(1) != nextTokensType.getDimSize(1))
    return {};
  Value weight =
      availableBefore(builder, dominance, next.getRouterWeight(), current);
  Value bias = availableBefore(builder, dominance, next.getBias(), current);
  if (!weight || (next.getBias() && !bias))
    return {};
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
  return guess;
}

SmallVector<RouteOp> mlir::moe::layerRoutes(func::FuncOp func) {
  auto readsGuess = [](Operation *user) {
    if (auto record = dyn_cast<RecordRoutingOp>(user))
      return record.getPredicted();
    if (auto prefetch = dyn_cast<PrefetchExpertsOp>(user))
      return prefetch.getPredicted();
    return false;
  };
  SmallVector<RouteOp> routes;
  func.walk([&](RouteOp route) {
    Value ids = route.getIds();
    if (ids.use_empty() || !llvm::all_of(ids.getUsers(), readsGuess))
      routes.push_back(route);
  });
  return routes;
}
