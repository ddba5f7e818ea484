//===- LowerStridedCopies.cpp - non-contiguous memref.copy to linalg.copy ---===//
//
// MemRefToLLVM turns a memref.copy that is not between contiguous buffers
// into a call of `memrefCopy` (MLIR's C runner utilities); compiled modules
// link only libc, libm and the runtime, so such copies become linalg.copy
// (and then loops) first. They appear when a function returns a view, e.g.
// the slice an ONNX Slice or Split produces.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/MemRef/Utils/MemRefUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERSTRIDEDCOPIES
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Mirrors MemRefToLLVM's test for copies it can lower to a memcpy.
bool isContiguous(Type type) {
  auto memref = dyn_cast<MemRefType>(type);
  return memref && (memref.getLayout().isIdentity() ||
                    memref::isStaticShapeAndContiguousRowMajor(memref));
}

struct StridedCopyToLinalg : OpRewritePattern<memref::CopyOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(memref::CopyOp copy,
                                PatternRewriter &rewriter) const override {
    if (isContiguous(copy.getSource().getType()) &&
        isContiguous(copy.getTarget().getType()))
      return rewriter.notifyMatchFailure(copy, "copy is contiguous");
    if (!isa<MemRefType>(copy.getSource().getType()) ||
        !isa<MemRefType>(copy.getTarget().getType()))
      return rewriter.notifyMatchFailure(copy, "unranked memref");
    rewriter.replaceOpWithNewOp<linalg::CopyOp>(copy, copy.getSource(),
                                                copy.getTarget());
    return success();
  }
};

struct MoELowerStridedCopiesPass
    : moe::impl::MoELowerStridedCopiesBase<MoELowerStridedCopiesPass> {
  void runOnOperation() override {
    // One walk: each copy is rewritten once, and nothing else needs a
    // fixpoint (the greedy driver would also fold and simplify the whole
    // function, a decoder layer's worth of ops at a time).
    RewritePatternSet patterns(&getContext());
    patterns.add<StridedCopyToLinalg>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};

} // namespace
