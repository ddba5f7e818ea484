//===- FuseGather.cpp - expert GEMMs reading token rows in place ---------===//
//
// moe.dispatch copies every token's row once per expert that took it, into
// the [T*k, H] rows that moe.expert's first GEMM reads. The copy is T*k*H
// elements written and read back, and a serial pass over them. Fused, the
// expert reads the token rows in place through dispatch's row_tokens (the
// token of every dispatched row), as vLLM's fused_moe kernel reads A through
// its sorted token ids; dispatch still groups the rows by expert, but writes
// only the indices.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEGATHER
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct GatherExpertRows : OpRewritePattern<ExpertOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ExpertOp expert,
                                PatternRewriter &rewriter) const override {
    if (expert.gathersRows())
      return rewriter.notifyMatchFailure(expert, "already gathers its rows");
    auto dispatch = expert.getRows().getDefiningOp<DispatchOp>();
    if (!dispatch || dispatch.getOffsets() != expert.getOffsets())
      return rewriter.notifyMatchFailure(
          expert, "rows and offsets are not from one moe.dispatch");
    rewriter.modifyOpInPlace(expert, [&] {
      expert.getRowsMutable().assign(dispatch.getInput());
      expert.getGatherTokensMutable().assign(dispatch.getRowTokens());
    });
    return success();
  }
};

struct MoEFuseGatherPass : moe::impl::MoEFuseGatherBase<MoEFuseGatherPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<GatherExpertRows>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
