//===- InterchangeReductions.cpp - contiguous loops innermost ---------------===//
//
// Linalg lowers a generic op's loops in the order of its dimensions, and the
// importer puts reductions last: the probabilities-times-values product of
// attention, `O[s, d] += P[s, t] * V[t, d]`, became a scalar loop over t
// reading V with a stride of a row and accumulating through memory, which
// LLVM cannot vectorize. With the output's last dimension d innermost
// instead, every access in the inner loop is contiguous along d or does not
// depend on it, and the loop is a plain vectorizable axpy.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEINTERCHANGEREDUCTIONS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// True when `operand`'s accesses are contiguous along loop `dim` (it is
/// the operand's last index and that has unit stride) or do not depend on it.
bool contiguousOrInvariant(linalg::GenericOp op, OpOperand &operand,
                           unsigned dim) {
  AffineMap map = op.getMatchingIndexingMap(&operand);
  if (!map.isFunctionOfDim(dim))
    return true;
  unsigned last = map.getNumResults() - 1;
  for (unsigned i = 0; i < last; ++i)
    if (map.getResult(i).isFunctionOfDim(dim))
      return false;
  auto expr = dyn_cast<AffineDimExpr>(map.getResult(last));
  if (!expr || expr.getPosition() != dim)
    return false;
  auto type = dyn_cast<MemRefType>(operand.get().getType());
  if (!type)
    return false;
  SmallVector<int64_t> strides;
  int64_t offset;
  return succeeded(type.getStridesAndOffset(strides, offset)) &&
         strides.back() == 1;
}

struct MoveContiguousDimInward : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    unsigned loops = op.getNumLoops();
    auto iterators = op.getIteratorTypesArray();
    if (!op.hasPureBufferSemantics() || op.getNumDpsInits() != 1 ||
        loops < 2 || iterators.back() != utils::IteratorType::reduction)
      return rewriter.notifyMatchFailure(op, "innermost loop is not a "
                                             "reduction");
    AffineMap outMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
    if (outMap.getNumResults() == 0)
      return rewriter.notifyMatchFailure(op, "scalar output");
    auto last = dyn_cast<AffineDimExpr>(outMap.getResults().back());
    if (!last || iterators[last.getPosition()] != utils::IteratorType::parallel)
      return rewriter.notifyMatchFailure(op, "output's last index is not a "
                                             "parallel loop");
    unsigned dim = last.getPosition();
    for (OpOperand &operand : op->getOpOperands())
      if (!contiguousOrInvariant(op, operand, dim))
        return rewriter.notifyMatchFailure(op, "an operand is strided along "
                                               "the output's last dimension");
    SmallVector<unsigned> order;
    for (unsigned d = 0; d < loops; ++d)
      if (d != dim)
        order.push_back(d);
    order.push_back(dim);
    if (failed(linalg::interchangeGenericOp(rewriter, op, order)))
      return rewriter.notifyMatchFailure(op, "interchange failed");
    return success();
  }
};

struct MoEInterchangeReductionsPass
    : moe::impl::MoEInterchangeReductionsBase<MoEInterchangeReductionsPass> {
  void runOnOperation() override {
    // One walk: an interchanged op has its contiguous dimension innermost
    // already, so no op needs a second visit.
    RewritePatternSet patterns(&getContext());
    patterns.add<MoveContiguousDimInward>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};

} // namespace
