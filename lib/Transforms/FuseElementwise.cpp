//===- FuseElementwise.cpp - elementwise producers into their consumers ----===//
//
// The importer writes one linalg.generic per ONNX node, so a norm, a RoPE
// rotation or a residual add is a chain of loops over buffers written and
// read again. Upstream's elementwise fusion merges a producer into its
// consumer, but it fuses into any consumer: fused into a contraction that
// reads each producer element many times (the rotated keys of QK^T, read
// once per query), the producer is recomputed that many times. Here a
// producer is fused only where the consumer reads each of its elements once
// (its indexing map for the operand is a permutation of the consumer's
// loops), and only when the consumer is its only user, so nothing is
// computed twice. Producers that only move data (a transpose, a broadcast:
// their body yields an input) fuse into any consumer: reading through them
// costs an index computation, not a recomputation, and saves materializing
// them (the keys transposed for QK^T, as torch exports `k.transpose(2, 3)`,
// become a plain operand of the batched contraction kernel). The
// grouped-query-attention repeat of the keys and values (a broadcast along
// a new unit dimension, collapsed into the heads) is read in place too: the
// consumer indexes the unrepeated tensor at head floordiv repeats.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEELEMENTWISE
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// True when `op`'s body yields one of its inputs unchanged.
bool onlyMovesData(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != 1 || op.getNumDpsInits() != 1)
    return false;
  auto yielded = dyn_cast<BlockArgument>(body.getTerminator()->getOperand(0));
  return yielded && yielded.getOwner() == &body &&
         yielded.getArgNumber() < op.getNumDpsInputs();
}

bool fusionRecomputesNothing(OpOperand *fused) {
  Operation *producer = fused->get().getDefiningOp();
  auto consumer = dyn_cast<linalg::GenericOp>(fused->getOwner());
  if (!producer || !producer->hasOneUse() || !consumer)
    return false;
  if (auto generic = dyn_cast<linalg::GenericOp>(producer);
      generic && onlyMovesData(generic))
    return true;
  return consumer.getMatchingIndexingMap(fused).isPermutation();
}

/// Transposes and broadcasts feeding a linalg.generic as generic ops, which
/// the fusion patterns take as producers.
void generalizeDataMovement(Operation *root) {
  SmallVector<linalg::LinalgOp> ops;
  root->walk([&](linalg::LinalgOp op) {
    if (isa<linalg::TransposeOp, linalg::BroadcastOp>(op) &&
        op.hasPureTensorSemantics() && op->hasOneUse() &&
        isa<linalg::GenericOp>(*op->user_begin()))
      ops.push_back(op);
  });
  IRRewriter rewriter(root->getContext());
  for (linalg::LinalgOp op : ops) {
    rewriter.setInsertionPoint(op);
    (void)linalg::generalizeNamedOp(rewriter, op);
  }
}

/// `consumer` reading `collapse_shape(broadcast(source))` where each
/// collapsed group is one dimension or a dimension followed by a broadcast
/// one of static size R (repeat_kv: [B, KV, 1, S, D] broadcast to
/// [B, KV, R, S, D] and collapsed to [B, KV * R, S, D]): reads `source`
/// collapsed the same way instead, at the group's index floordiv R.
struct ReadRepeatsInPlace : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp consumer,
                                PatternRewriter &rewriter) const override {
    if (!consumer.hasPureTensorSemantics())
      return failure();
    for (OpOperand *operand : consumer.getDpsInputOperands()) {
      auto collapse = operand->get().getDefiningOp<tensor::CollapseShapeOp>();
      // Besides the consumer, only size queries (which the unrepeated
      // tensor answers too) may use the repeated one.
      if (!collapse ||
          !llvm::all_of(collapse->getUses(), [&](OpOperand &use) {
            if (use.getOwner() == consumer)
              return use.getOperandNumber() == operand->getOperandNumber();
            auto dim = dyn_cast<tensor::DimOp>(use.getOwner());
            std::optional<int64_t> index =
                dim ? dim.getConstantIndex() : std::nullopt;
            return index && *index >= 0 &&
                   *index < collapse.getResultType().getRank();
          }))
        continue;
      auto repeat = collapse.getSrc().getDefiningOp<linalg::GenericOp>();
      if (!repeat || !repeat->hasOneUse() || !onlyMovesData(repeat) ||
          repeat.getNumDpsInputs() != 1 ||
          !repeat.getMatchingIndexingMap(repeat.getDpsInitOperand(0))
               .isIdentity())
        continue;
      AffineMap sourceMap =
          repeat.getMatchingIndexingMap(repeat.getDpsInputOperand(0));
      auto repeatedType = cast<RankedTensorType>(collapse.getSrcType());
      // Per source dimension: copied (its own loop) or broadcast (0).
      SmallVector<bool> broadcast;
      bool ok = sourceMap.getNumResults() == repeatedType.getRank();
      for (auto [i, expr] : llvm::enumerate(sourceMap.getResults())) {
        if (!ok)
          break;
        auto dim = dyn_cast<AffineDimExpr>(expr);
        auto constant = dyn_cast<AffineConstantExpr>(expr);
        ok = (dim && dim.getPosition() == i) ||
             (constant && constant.getValue() == 0);
        broadcast.push_back(constant != nullptr);
      }
      if (!ok)
        continue;
      // Each group: [d] or [d, r] with r broadcast and of static size.
      SmallVector<int64_t> divisors;
      for (const ReassociationIndices &group :
           collapse.getReassociationIndices()) {
        if (group.size() == 1 && !broadcast[group[0]]) {
          divisors.push_back(1);
        } else if (group.size() == 2 && !broadcast[group[0]] &&
                   broadcast[group[1]] &&
                   !repeatedType.isDynamicDim(group[1])) {
          divisors.push_back(repeatedType.getDimSize(group[1]));
        } else {
          ok = false;
          break;
        }
      }
      if (!ok || llvm::all_of(divisors, [](int64_t d) { return d == 1; }))
        continue;
      // The source's unit dimensions fold into their groups.
      Value source = repeat.getDpsInputs()[0];
      auto sourceType = cast<RankedTensorType>(source.getType());
      if (sourceType.getRank() != repeatedType.getRank())
        continue;
      for (const ReassociationIndices &group :
           collapse.getReassociationIndices())
        if (group.size() == 2 && sourceType.getDimSize(group[1]) != 1)
          ok = false;
      if (!ok)
        continue;
      // Where the repeated tensor was made: it dominates all its uses.
      rewriter.setInsertionPointAfter(collapse);
      Value unrepeated = tensor::CollapseShapeOp::create(
          rewriter, collapse.getLoc(), source,
          collapse.getReassociationIndices());
      AffineMap map = consumer.getMatchingIndexingMap(operand);
      SmallVector<AffineExpr> exprs;
      for (auto [expr, divisor] : llvm::zip(map.getResults(), divisors))
        exprs.push_back(divisor == 1 ? expr : expr.floorDiv(divisor));
      SmallVector<AffineMap> maps = consumer.getIndexingMapsArray();
      maps[operand->getOperandNumber()] = AffineMap::get(
          map.getNumDims(), map.getNumSymbols(), exprs, map.getContext());
      rewriter.modifyOpInPlace(consumer, [&] {
        operand->set(unrepeated);
        consumer.setIndexingMapsAttr(rewriter.getAffineMapArrayAttr(maps));
      });
      for (Operation *user : llvm::to_vector(collapse->getUsers())) {
        auto dim = cast<tensor::DimOp>(user);
        int64_t index = *dim.getConstantIndex();
        rewriter.setInsertionPoint(dim);
        Value size = tensor::DimOp::create(rewriter, dim.getLoc(), unrepeated,
                                           index);
        if (divisors[index] != 1)
          size = arith::MulIOp::create(
              rewriter, dim.getLoc(), size,
              arith::ConstantIndexOp::create(rewriter, dim.getLoc(),
                                             divisors[index]));
        rewriter.replaceOp(dim, size);
      }
      return success();
    }
    return failure();
  }
};

struct MoEFuseElementwisePass
    : moe::impl::MoEFuseElementwiseBase<MoEFuseElementwisePass> {
  void runOnOperation() override {
    generalizeDataMovement(getOperation());
    RewritePatternSet patterns(&getContext());
    linalg::populateElementwiseOpsFusionPatterns(patterns,
                                                 fusionRecomputesNothing);
    linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
    patterns.add<ReadRepeatsInPlace>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
