//===- CollapseParallelLoops.cpp - one dimension per loop -----------------===//
//
// The cuda pipeline tiles parallel loops for blocks and threads with one
// list of tile sizes, applied to the leading dimensions: with [1, 128],
// rows become blocks and 128 of the next dimension threads. Loops of other
// ranks map badly: a 1-D loop got one thread per block, a [B, S, H] loop
// 128 threads along S (strided accesses, few of them active for short
// sequences), a [B, H, S, S] attention loop its last dimension as a serial
// loop in each thread. Collapsing every loop into one row-major dimension
// first makes one tile size right for all of them: 128 consecutive
// elements per block, consecutive threads on consecutive addresses.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/SCF/Utils/Utils.h"
#include "mlir/IR/PatternMatch.h"

#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOECOLLAPSEPARALLELLOOPS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoECollapseParallelLoopsPass
    : moe::impl::MoECollapseParallelLoopsBase<MoECollapseParallelLoopsPass> {
  void runOnOperation() override {
    SmallVector<scf::ParallelOp> loops;
    getOperation()->walk([&](scf::ParallelOp loop) {
      // Outermost loops without reductions; nested ones run inside a
      // thread.
      if (loop.getNumLoops() > 1 && loop.getNumReductions() == 0 &&
          !loop->getParentOfType<scf::ParallelOp>())
        loops.push_back(loop);
    });
    IRRewriter rewriter(&getContext());
    for (scf::ParallelOp loop : loops) {
      std::vector<unsigned> all(loop.getNumLoops());
      std::iota(all.begin(), all.end(), 0u);
      rewriter.setInsertionPoint(loop);
      collapseParallelLoops(rewriter, loop, {all});
    }
  }
};

} // namespace
