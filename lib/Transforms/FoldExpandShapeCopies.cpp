//===- FoldExpandShapeCopies.cpp - copy into collapsed destinations ---------===//
//
// A [B, S, H] layer returns its [B*S, H] result through a
// memref.expand_shape that is then copied into the caller's output buffer.
// MLIR 22's expand-strided-metadata crashes on memref.expand_shape with two
// dynamic result dimensions, and the copy does not need the expanded view:
// copying the source into a collapsed view of a contiguous destination moves
// the same bytes.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFOLDEXPANDSHAPECOPIES
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct CopyFromExpandShape : OpRewritePattern<memref::CopyOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(memref::CopyOp copy,
                                PatternRewriter &rewriter) const override {
    auto expand = copy.getSource().getDefiningOp<memref::ExpandShapeOp>();
    if (!expand)
      return rewriter.notifyMatchFailure(copy, "source is not an expand_shape");
    auto targetType = cast<MemRefType>(copy.getTarget().getType());
    if (!targetType.getLayout().isIdentity() ||
        !memref::CollapseShapeOp::isGuaranteedCollapsible(
            targetType, expand.getReassociationIndices()))
      return rewriter.notifyMatchFailure(copy, "target is not collapsible");
    Value collapsed = memref::CollapseShapeOp::create(
        rewriter, copy.getLoc(), copy.getTarget(),
        expand.getReassociationIndices());
    rewriter.replaceOpWithNewOp<memref::CopyOp>(copy, expand.getSrc(),
                                                collapsed);
    if (expand->use_empty())
      rewriter.eraseOp(expand);
    return success();
  }
};

/// The same crash for an expand_shape that is not copied out (its result
/// feeds loops): with a contiguous source, the expanded view is the
/// row-major view of the output shape, a memref.reinterpret_cast whose
/// strides are the suffix products of the sizes.
struct ExpandShapeToReinterpretCast
    : OpRewritePattern<memref::ExpandShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(memref::ExpandShapeOp expand,
                                PatternRewriter &rewriter) const override {
    MemRefType resultType = expand.getResultType();
    if (!expand.getSrcType().getLayout().isIdentity() ||
        !resultType.getLayout().isIdentity())
      return rewriter.notifyMatchFailure(expand, "not contiguous");
    bool severalDynamic = llvm::any_of(
        expand.getReassociationIndices(), [&](const ReassociationIndices &g) {
          return llvm::count_if(g, [&](int64_t d) {
                   return resultType.isDynamicDim(d);
                 }) > 1;
        });
    if (!severalDynamic)
      return rewriter.notifyMatchFailure(expand, "expand-strided-metadata "
                                                 "handles it");
    Location loc = expand.getLoc();
    SmallVector<OpFoldResult> sizes = expand.getMixedOutputShape();
    SmallVector<OpFoldResult> strides(sizes.size());
    OpFoldResult stride = rewriter.getIndexAttr(1);
    for (int64_t d = sizes.size() - 1; d >= 0; --d) {
      strides[d] = stride;
      if (d == 0)
        break; // the outermost size multiplies no stride
      std::optional<int64_t> s = getConstantIntValue(stride);
      std::optional<int64_t> n = getConstantIntValue(sizes[d]);
      if (s && n)
        stride = rewriter.getIndexAttr(*s * *n);
      else
        stride = arith::MulIOp::create(
                     rewriter, loc,
                     getValueOrCreateConstantIndexOp(rewriter, loc, sizes[d]),
                     getValueOrCreateConstantIndexOp(rewriter, loc, stride))
                     .getResult();
    }
    rewriter.replaceOpWithNewOp<memref::ReinterpretCastOp>(
        expand, resultType, expand.getSrc(), rewriter.getIndexAttr(0), sizes,
        strides);
    return success();
  }
};

struct MoEFoldExpandShapeCopiesPass
    : moe::impl::MoEFoldExpandShapeCopiesBase<MoEFoldExpandShapeCopiesPass> {
  void runOnOperation() override {
    // Two walks instead of the greedy driver's fixpoint over the whole
    // function: the copies first, so that an expand_shape that is copied out
    // folds into its copy before the second walk would turn it into a cast.
    RewritePatternSet copies(&getContext());
    copies.add<CopyFromExpandShape>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(copies));
    RewritePatternSet expands(&getContext());
    expands.add<ExpandShapeToReinterpretCast>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(expands));
  }
};

} // namespace
