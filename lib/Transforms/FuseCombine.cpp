//===- FuseCombine.cpp - moe.combine into moe.expert's fc2 epilogue ------===//
//
// Unfused, the experts write one output row per dispatched row ([T*k, H])
// and moe.combine reads them all back to sum each token's k rows. Fused,
// fc2's epilogue scales each row by its routing weight and adds it to its
// token's row of the layer output directly. What the expert needs for that
// is per row: the token (dispatch's row_tokens) and the weight (gathered
// here from the [T, k] routing weights through slot_rows, a small
// linalg.generic over the rows). The expert accumulates into the shared
// experts' output when they are ungated; anything else combine adds (gated
// shared experts, zero-computation experts, dropped tokens passed through)
// stays a moe.combine, of an empty expert output, whose result the expert
// accumulates into.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSECOMBINE
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Whether combine adds anything but the routed experts' rows and an
/// ungated shared expert output (which the expert can accumulate into).
bool hasExtras(CombineOp combine) {
  if (combine.getSharedGate() || combine.getDroppedPassThrough())
    return true;
  return llvm::any_of(combine.getZeroExpertKinds(), [](ZeroExpertKind kind) {
    return kind != ZeroExpertKind::zero;
  });
}

/// `row_weights[r]`: the routing weight of the slot that dispatched row `r`
/// (`weights[t, j]` with `t = row_tokens[r]` and `slot_rows[t, j] = r`), 0
/// for padding rows.
Value gatherRowWeights(PatternRewriter &rewriter, Location loc,
                       CombineOp combine, Value rowTokens) {
  Value weights = combine.getWeights();
  Value slotRows = combine.getSlotRows();
  auto weightsType = cast<RankedTensorType>(weights.getType());
  Type weightType = weightsType.getElementType();
  int64_t k = weightsType.getDimSize(1);
  auto rowsType = cast<RankedTensorType>(rowTokens.getType());
  Value tokens = tensor::DimOp::create(rewriter, loc, weights, 0);
  SmallVector<Value> dynamicRows;
  if (rowsType.isDynamicDim(0))
    dynamicRows.push_back(tensor::DimOp::create(rewriter, loc, rowTokens, 0));
  Value init = tensor::EmptyOp::create(rewriter, loc, rowsType.getShape(),
                                       weightType, dynamicRows);
  MLIRContext *ctx = rewriter.getContext();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(1, ctx);
  auto gather = linalg::GenericOp::create(
      rewriter, loc, TypeRange{init.getType()}, ValueRange{rowTokens},
      ValueRange{init}, ArrayRef<AffineMap>{identity, identity},
      ArrayRef<utils::IteratorType>{utils::IteratorType::parallel},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Type i32 = b.getI32Type();
        Value row = arith::IndexCastOp::create(
            b, loc, i32, linalg::IndexOp::create(b, loc, 0));
        Value token = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                                 args[0]);
        Value zeroIndex = arith::ConstantIndexOp::create(b, loc, 0);
        Value valid = arith::AndIOp::create(
            b, loc,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, token,
                                  zeroIndex),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, token,
                                  tokens));
        token = arith::SelectOp::create(b, loc, valid, token, zeroIndex);
        // A row is dispatched by exactly one slot of its token.
        Value weight = arith::ConstantOp::create(
            b, loc, weightType, b.getFloatAttr(weightType, 0.0));
        for (int64_t j = 0; j < k; ++j) {
          Value slot = arith::ConstantIndexOp::create(b, loc, j);
          Value slotRow = tensor::ExtractOp::create(
              b, loc, slotRows, ValueRange{token, slot});
          Value isRow = arith::AndIOp::create(
              b, loc, valid,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, slotRow,
                                    row));
          weight = arith::SelectOp::create(
              b, loc, isRow,
              tensor::ExtractOp::create(b, loc, weights,
                                        ValueRange{token, slot}),
              weight);
        }
        linalg::YieldOp::create(b, loc, weight);
      });
  return gather.getResult(0);
}

struct FuseCombineIntoExpert : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CombineOp combine,
                                PatternRewriter &rewriter) const override {
    auto expert = combine.getExpertOutput().getDefiningOp<ExpertOp>();
    if (!expert || expert.combinesRows() || !expert->hasOneUse())
      return rewriter.notifyMatchFailure(
          combine, "expert output is not a moe.expert used only here");
    auto dispatch = combine.getSlotRows().getDefiningOp<DispatchOp>();
    if (!dispatch || dispatch.getOffsets() != expert.getOffsets())
      return rewriter.notifyMatchFailure(
          combine, "slot rows and expert rows are not from one moe.dispatch");
    auto resultType = cast<RankedTensorType>(combine.getType());
    if (!resultType.getElementType().isF32() ||
        !expert.getType().getElementType().isF32())
      return rewriter.notifyMatchFailure(combine,
                                         "only f32 outputs are accumulated");
    if (combine.getWeights().getType().isDynamicDim(1))
      return rewriter.notifyMatchFailure(combine, "k is dynamic");

    Location loc = combine.getLoc();
    Value expertOutput = combine.getExpertOutput();
    SmallVector<Value> dynamicSizes;
    if (resultType.isDynamicDim(0))
      dynamicSizes.push_back(
          tensor::DimOp::create(rewriter, loc, combine.getWeights(), 0));
    if (resultType.isDynamicDim(1))
      dynamicSizes.push_back(
          tensor::DimOp::create(rewriter, loc, expertOutput, 1));
    Value base;
    if (hasExtras(combine)) {
      // The same combine without routed rows: they are the expert's now.
      auto rowsType = cast<RankedTensorType>(expertOutput.getType());
      SmallVector<int64_t> emptyShape = {0, rowsType.getDimSize(1)};
      SmallVector<Value> dynamicHidden;
      if (rowsType.isDynamicDim(1))
        dynamicHidden.push_back(
            tensor::DimOp::create(rewriter, loc, expertOutput, 1));
      Value noRows = tensor::EmptyOp::create(
          rewriter, loc, emptyShape, rowsType.getElementType(), dynamicHidden);
      auto extras = cast<CombineOp>(rewriter.clone(*combine));
      rewriter.modifyOpInPlace(
          extras, [&] { extras.getExpertOutputMutable().assign(noRows); });
      base = extras.getResult();
    } else if (Value shared = combine.getShared()) {
      // DeepSeek-style shared experts, summed with the routed ones as they
      // are: their output is where the routed rows are added.
      base = shared;
    } else {
      Value empty =
          tensor::EmptyOp::create(rewriter, loc, resultType.getShape(),
                                  resultType.getElementType(), dynamicSizes);
      Value zero = arith::ConstantOp::create(
          rewriter, loc, rewriter.getZeroAttr(resultType.getElementType()));
      base = linalg::FillOp::create(rewriter, loc, zero, empty).getResult(0);
    }
    Value rowTokens = dispatch.getRowTokens();
    Value rowWeights = gatherRowWeights(rewriter, loc, combine, rowTokens);
    auto fused = ExpertOp::create(
        rewriter, expert.getLoc(), resultType, expert.getRows(),
        expert.getOffsets(), expert.getGatherTokens(), expert.getFc1(),
        expert.getFc1Bias(), expert.getFc2(), expert.getFc2Bias(),
        expert.getFc3(), expert.getFc3Bias(), expert.getFc1Scales(), expert.getFc2Scales(),
        expert.getFc3Scales(), expert.getFc1ZeroPoints(),
        expert.getFc2ZeroPoints(), expert.getFc3ZeroPoints(), base, rowTokens,
        rowWeights, expert.getActivationAttr(), expert.getSwigluFusionAttr(),
        expert.getAlphaAttr(), expert.getBetaAttr(), expert.getLimitAttr(),
        expert.getQuantAttr(), expert.getPanelWidthAttr());
    rewriter.replaceOp(combine, fused.getResult());
    rewriter.eraseOp(expert);
    return success();
  }
};

struct MoEFuseCombinePass
    : moe::impl::MoEFuseCombineBase<MoEFuseCombinePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseCombineIntoExpert>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
