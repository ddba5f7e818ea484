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
// computed twice.
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

bool readsEachElementOnce(OpOperand *fused) {
  Operation *producer = fused->get().getDefiningOp();
  auto consumer = dyn_cast<linalg::GenericOp>(fused->getOwner());
  if (!producer || !producer->hasOneUse() || !consumer)
    return false;
  return consumer.getMatchingIndexingMap(fused).isPermutation();
}

struct MoEFuseElementwisePass
    : moe::impl::MoEFuseElementwiseBase<MoEFuseElementwisePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    linalg::populateElementwiseOpsFusionPatterns(patterns,
                                                 readsEachElementOnce);
    linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
