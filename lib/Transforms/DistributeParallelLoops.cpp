//===- DistributeParallelLoops.cpp - parallel loop nests for the CPU pool --===//
//
// Linalg ops on buffers become `scf.parallel` nests over their parallel
// dimensions. The runtime's worker pool runs one-dimensional loops, and a
// dispatch costs a few microseconds, so each outermost nest is reshaped
// here: nests with little work become serial loops on the calling thread;
// the others keep their leading dimensions as one parallel dimension (in
// row-major order) and run the last one as a serial inner loop, which is
// contiguous for the row-major buffers the importer produces and which
// LLVM vectorizes (unless the body has loops of its own, whose innermost
// loop is the contiguous one: then every dimension is parallel). Collapsing every dimension into one (as the cuda
// pipeline does for its threads) would put a division by every inner size
// on each element and hide the contiguous loop from the vectorizer.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "moe-mlir/Transforms/LoopWork.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDISTRIBUTEPARALLELLOOPS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Moves the body of `loop` into `block` before its terminator, with the
/// loop's induction variables replaced by `ivs`, and erases the loop.
void inlineBody(RewriterBase &rewriter, scf::ParallelOp loop, Block *block,
                ValueRange ivs) {
  Block *body = loop.getBody();
  rewriter.eraseOp(body->getTerminator());
  rewriter.inlineBlockBefore(body, block->getTerminator(), ivs);
  rewriter.eraseOp(loop);
}

/// Replaces `loop` by serial scf.for loops, outermost dimension first.
void serialize(RewriterBase &rewriter, scf::ParallelOp loop) {
  Location loc = loop.getLoc();
  rewriter.setInsertionPoint(loop);
  SmallVector<Value> ivs;
  Block *innermost = nullptr;
  for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(),
                                       loop.getUpperBound(), loop.getStep())) {
    auto serial = scf::ForOp::create(rewriter, loc, lb, ub, step);
    ivs.push_back(serial.getInductionVar());
    innermost = serial.getBody();
    rewriter.setInsertionPoint(innermost->getTerminator());
  }
  inlineBody(rewriter, loop, innermost, ivs);
}

/// Replaces the n-dimensional `loop` by a one-dimensional parallel loop over
/// its first `parallelDims` dimensions (row-major) around a serial loop over
/// the last one when `parallelDims` is n - 1.
void distribute(RewriterBase &rewriter, scf::ParallelOp loop,
                unsigned parallelDims) {
  Location loc = loop.getLoc();
  rewriter.setInsertionPoint(loop);
  unsigned rank = loop.getNumLoops();
  SmallVector<OpFoldResult> trips;
  Value outerTrips = arith::ConstantIndexOp::create(rewriter, loc, 1);
  for (unsigned d = 0; d < parallelDims; ++d) {
    Value span = arith::SubIOp::create(rewriter, loc, loop.getUpperBound()[d],
                                       loop.getLowerBound()[d]);
    Value count =
        arith::CeilDivSIOp::create(rewriter, loc, span, loop.getStep()[d]);
    count = arith::MaxSIOp::create(
        rewriter, loc, count, arith::ConstantIndexOp::create(rewriter, loc, 0));
    trips.push_back(count);
    outerTrips = arith::MulIOp::create(rewriter, loc, outerTrips, count);
  }
  Value zero = arith::ConstantIndexOp::create(rewriter, loc, 0);
  Value one = arith::ConstantIndexOp::create(rewriter, loc, 1);
  auto rows = scf::ParallelOp::create(rewriter, loc, ValueRange{zero},
                                      ValueRange{outerTrips}, ValueRange{one});
  rewriter.setInsertionPoint(rows.getBody()->getTerminator());
  auto indices = affine::AffineDelinearizeIndexOp::create(
      rewriter, loc, rows.getInductionVars()[0], trips);
  SmallVector<Value> ivs;
  for (unsigned d = 0; d < parallelDims; ++d) {
    Value offset = arith::MulIOp::create(rewriter, loc, indices.getResult(d),
                                         loop.getStep()[d]);
    ivs.push_back(
        arith::AddIOp::create(rewriter, loc, loop.getLowerBound()[d], offset));
  }
  Block *body = rows.getBody();
  if (parallelDims < rank) {
    auto inner = scf::ForOp::create(rewriter, loc, loop.getLowerBound().back(),
                                    loop.getUpperBound().back(),
                                    loop.getStep().back());
    ivs.push_back(inner.getInductionVar());
    body = inner.getBody();
  }
  inlineBody(rewriter, loop, body, ivs);
}

/// True when `loop`'s body has loops of its own.
bool hasInnerLoops(scf::ParallelOp loop) {
  return loop.getBody()
      ->walk([](LoopLikeOpInterface) { return WalkResult::interrupt(); })
      .wasInterrupted();
}

struct MoEDistributeParallelLoopsPass
    : moe::impl::MoEDistributeParallelLoopsBase<
          MoEDistributeParallelLoopsPass> {
  using MoEDistributeParallelLoopsBase::MoEDistributeParallelLoopsBase;

  void runOnOperation() override {
    SmallVector<scf::ParallelOp> outermost, nested;
    getOperation()->walk([&](scf::ParallelOp loop) {
      if (loop.getNumReductions() != 0)
        return;
      (loop->getParentOfType<scf::ParallelOp>() ? nested : outermost)
          .push_back(loop);
    });
    IRRewriter rewriter(&getContext());
    // A thread runs its share of an outer loop alone: loops inside are
    // serial (innermost first, so that each is still whole when moved).
    for (scf::ParallelOp loop : llvm::reverse(nested))
      serialize(rewriter, loop);
    for (scf::ParallelOp loop : outermost) {
      int64_t trips = 1;
      for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(),
                                           loop.getUpperBound(),
                                           loop.getStep()))
        trips = moe::saturatingMul(trips, moe::estimateTripCount(lb, ub, step));
      if (moe::saturatingMul(trips, moe::estimateWork(*loop.getBody())) <
          minWork)
        serialize(rewriter, loop);
      else if (loop.getNumLoops() > 1)
        // A body with loops of its own has its contiguous loop inside (a
        // reduction, or a dimension moved inward): every dimension of the
        // nest is then parallel work.
        distribute(rewriter, loop,
                   hasInnerLoops(loop) ? loop.getNumLoops()
                                       : loop.getNumLoops() - 1);
    }
  }
};

} // namespace
