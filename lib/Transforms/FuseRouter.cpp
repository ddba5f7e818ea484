//===- FuseRouter.cpp - the router's MatMul inside moe.layer / moe.route ---===//
//
// Models compute router logits with a MatMul of the tokens by a router
// weight and hand them to the MoE block. Unfused, the [T, E] logits are
// written by one worker-pool dispatch and read back by the routing in
// another. Given the weight, the route computes each block of tokens'
// logits itself and routes them while they are in cache, in one.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEROUTER
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The operands of a router MatMul `logits = tokens . weight^T`.
struct RouterMatmul {
  Value tokens, weight;
};

/// Whether `body` is `yield(out + in0 * in1)`, either operand order.
bool isMultiplyAccumulate(Block &body) {
  if (body.getNumArguments() != 3 || body.getOperations().size() != 3)
    return false;
  auto add = body.getTerminator()->getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add)
    return false;
  Value acc = body.getArgument(2);
  Value product = add.getLhs() == acc   ? add.getRhs()
                  : add.getRhs() == acc ? add.getLhs()
                                        : Value();
  auto mul = product ? product.getDefiningOp<arith::MulFOp>() : nullptr;
  if (!mul)
    return false;
  Value a = body.getArgument(0), b = body.getArgument(1);
  return (mul.getLhs() == a && mul.getRhs() == b) ||
         (mul.getLhs() == b && mul.getRhs() == a);
}

/// Matches `logits` produced, for nothing else, by the transposed-B
/// contraction `logits[m, n] = sum_k tokens[m, k] * weight[n, k]` on zeros,
/// all of one element type, with a static number of experts.
FailureOr<RouterMatmul> matchRouterMatmul(Value logits) {
  auto generic = logits.getDefiningOp<linalg::GenericOp>();
  if (!generic || !logits.hasOneUse() || generic.getNumDpsInputs() != 2 ||
      generic.getNumDpsInits() != 1)
    return failure();
  MLIRContext *ctx = generic.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  if (generic.getIndexingMapsArray() !=
      AffineMap::inferFromExprList(
          ArrayRef<ArrayRef<AffineExpr>>{{m, k}, {n, k}, {m, n}}, ctx))
    return failure();
  using utils::IteratorType;
  if (generic.getIteratorTypesArray() !=
      SmallVector<IteratorType>{IteratorType::parallel, IteratorType::parallel,
                                IteratorType::reduction})
    return failure();
  if (!isMultiplyAccumulate(generic.getRegion().front()))
    return failure();
  auto fill = generic.getDpsInits()[0].getDefiningOp<linalg::FillOp>();
  if (!fill || !matchPattern(fill.getInputs()[0], m_AnyZeroFloat()))
    return failure();
  Value tokens = generic.getDpsInputs()[0];
  Value weight = generic.getDpsInputs()[1];
  Type elementType = getElementTypeOrSelf(logits.getType());
  if (getElementTypeOrSelf(tokens.getType()) != elementType ||
      getElementTypeOrSelf(weight.getType()) != elementType)
    return failure();
  if (cast<RankedTensorType>(weight.getType()).isDynamicDim(0))
    return failure();
  return RouterMatmul{tokens, weight};
}

/// moe.layer x, (x . w^T) -> moe.layer x router_weight w.
struct FuseRouterIntoLayer : OpRewritePattern<LayerOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LayerOp layer,
                                PatternRewriter &rewriter) const override {
    if (!layer.getLogits())
      return rewriter.notifyMatchFailure(layer, "takes the router weight");
    FailureOr<RouterMatmul> router = matchRouterMatmul(layer.getLogits());
    if (failed(router))
      return rewriter.notifyMatchFailure(layer, "logits are no router MatMul");
    // The MatMul must read the layer's own tokens: [T, H], or the collapse
    // of a [B, S, H] input.
    Value tokens = router->tokens;
    auto collapse = tokens.getDefiningOp<tensor::CollapseShapeOp>();
    if (tokens != layer.getInput() &&
        !(collapse && collapse.getSrc() == layer.getInput()))
      return rewriter.notifyMatchFailure(
          layer, "the router MatMul reads other tokens than the layer");
    rewriter.modifyOpInPlace(layer, [&] {
      layer.getLogitsMutable().clear();
      layer.getRouterWeightMutable().assign(router->weight);
    });
    return success();
  }
};

/// moe.route (x . w^T) -> moe.route x router_weight w.
struct FuseRouterIntoRoute : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RouteOp route,
                                PatternRewriter &rewriter) const override {
    if (route.getRouterWeight())
      return rewriter.notifyMatchFailure(route, "takes the router weight");
    FailureOr<RouterMatmul> router = matchRouterMatmul(route.getInput());
    if (failed(router))
      return rewriter.notifyMatchFailure(route, "logits are no router MatMul");
    rewriter.modifyOpInPlace(route, [&] {
      route.getInputMutable().assign(router->tokens);
      route.getRouterWeightMutable().assign(router->weight);
    });
    return success();
  }
};

struct MoEFuseRouterPass : moe::impl::MoEFuseRouterBase<MoEFuseRouterPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseRouterIntoLayer, FuseRouterIntoRoute>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
