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

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

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

struct MoEFoldExpandShapeCopiesPass
    : moe::impl::MoEFoldExpandShapeCopiesBase<MoEFoldExpandShapeCopiesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<CopyFromExpandShape>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
