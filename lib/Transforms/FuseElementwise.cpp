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
// become a plain operand of the batched contraction kernel).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
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

struct MoEFuseElementwisePass
    : moe::impl::MoEFuseElementwiseBase<MoEFuseElementwisePass> {
  void runOnOperation() override {
    generalizeDataMovement(getOperation());
    RewritePatternSet patterns(&getContext());
    linalg::populateElementwiseOpsFusionPatterns(patterns,
                                                 fusionRecomputesNothing);
    linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
