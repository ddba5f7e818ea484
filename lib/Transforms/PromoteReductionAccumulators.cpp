//===- PromoteReductionAccumulators.cpp - reductions in registers ---------===//
//
// Linalg lowers a reduction to loops that load the output element, add to
// it and store it back on every iteration (softmax's row sums and maxima,
// RMSNorm's sums of squares). LLVM cannot keep such an accumulator in a
// register, and so cannot vectorize the loop, unless it proves that no other
// access in the loop touches the element; with memref arguments it rarely
// can. Here the proof is easy where the buffers come from: an element of a
// fresh allocation is not reachable through any other root buffer. The
// element then becomes the loop's iter_arg, loaded before the loop and
// stored after it.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPROMOTEREDUCTIONACCUMULATORS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// The buffer `memref` is a view of (through subviews, reshapes and casts).
Value rootBuffer(Value memref) {
  while (auto view = memref.getDefiningOp<ViewLikeOpInterface>())
    memref = view.getViewSource();
  return memref;
}

bool isFreshAllocation(Value root) {
  return root.getDefiningOp<memref::AllocOp>() ||
         root.getDefiningOp<memref::AllocaOp>();
}

/// Whether accesses through roots `a` and `b` cannot overlap: different
/// buffers, one of which was allocated here.
bool disjointRoots(Value a, Value b) {
  return a != b && (isFreshAllocation(a) || isFreshAllocation(b));
}

/// The accumulator `store` writes in `loop`'s body, if it can live in a
/// register: `store` is at the body's top level, stores at loop-invariant
/// indices, and the only other access to its buffer in the loop is one load
/// of the same element before it at the top level; every other memory
/// access in the loop is a load or store of a buffer disjoint from it.
memref::LoadOp promotableLoad(scf::ForOp loop, memref::StoreOp store) {
  Value root = rootBuffer(store.getMemRef());
  for (Value index : store.getIndices())
    if (!loop.isDefinedOutsideOfLoop(index))
      return {};
  if (!loop.isDefinedOutsideOfLoop(store.getMemRef()))
    return {};
  memref::LoadOp load;
  WalkResult walk = loop.getBody()->walk([&](Operation *op) {
    if (op == store)
      return WalkResult::advance();
    Value accessed;
    if (auto other = dyn_cast<memref::LoadOp>(op))
      accessed = other.getMemRef();
    else if (auto other = dyn_cast<memref::StoreOp>(op))
      accessed = other.getMemRef();
    if (accessed) {
      if (disjointRoots(rootBuffer(accessed), root))
        return WalkResult::advance();
      auto candidate = dyn_cast<memref::LoadOp>(op);
      if (!load && candidate && accessed == store.getMemRef() &&
          candidate->getBlock() == loop.getBody() &&
          candidate->isBeforeInBlock(store) &&
          candidate.getIndices() == store.getIndices()) {
        load = candidate;
        return WalkResult::advance();
      }
      return WalkResult::interrupt();
    }
    // Anything else that touches memory (calls, copies, vector accesses)
    // could reach the element.
    if (auto effects = dyn_cast<MemoryEffectOpInterface>(op))
      return effects.hasNoEffect() ? WalkResult::advance()
                                   : WalkResult::interrupt();
    return op->hasTrait<OpTrait::HasRecursiveMemoryEffects>()
               ? WalkResult::advance()
               : WalkResult::interrupt();
  });
  if (walk.wasInterrupted())
    return {};
  return load;
}

/// Promotes one accumulator of `loop`; returns the new loop, or null when
/// there is none.
scf::ForOp promoteOne(scf::ForOp loop) {
  for (Operation &op : *loop.getBody()) {
    auto store = dyn_cast<memref::StoreOp>(&op);
    if (!store)
      continue;
    memref::LoadOp load = promotableLoad(loop, store);
    if (!load)
      continue;
    OpBuilder b(loop);
    Value init = memref::LoadOp::create(b, load.getLoc(), store.getMemRef(),
                                        store.getIndices());
    Value memref = store.getMemRef();
    SmallVector<Value> indices(store.getIndices());
    Value stored = store.getValueToStore();
    IRRewriter rewriter(b);
    // `loop` is erased: only newLoop from here on.
    auto newLoop = cast<scf::ForOp>(*loop.replaceWithAdditionalYields(
        rewriter, init, /*replaceInitOperandUsesInLoop=*/false,
        [&](OpBuilder &, Location, ArrayRef<BlockArgument>) {
          return SmallVector<Value>{stored};
        }));
    BlockArgument accumulator = newLoop.getRegionIterArgs().back();
    load.getResult().replaceAllUsesWith(accumulator);
    // A sum or product may be reassociated, which is what lets LLVM
    // vectorize it (partial sums per lane, combined after the loop); the
    // expert GEMMs' sums are reordered the same way.
    Operation *combine = stored.getDefiningOp();
    auto fastMath =
        dyn_cast_or_null<arith::ArithFastMathInterface>(combine);
    if (fastMath && isa<arith::AddFOp, arith::MulFOp>(combine) &&
        llvm::is_contained(combine->getOperands(), Value(accumulator))) {
      // Ops built without flags have no attribute at all.
      arith::FastMathFlagsAttr flags = fastMath.getFastMathFlagsAttr();
      combine->setAttr(
          fastMath.getFastMathAttrName(),
          arith::FastMathFlagsAttr::get(
              newLoop.getContext(),
              (flags ? flags.getValue() : arith::FastMathFlags::none) |
                  arith::FastMathFlags::reassoc));
    }
    load.erase();
    store.erase();
    b.setInsertionPointAfter(newLoop);
    memref::StoreOp::create(b, newLoop.getLoc(), newLoop.getResults().back(),
                            memref, indices);
    return newLoop;
  }
  return {};
}

struct MoEPromoteReductionAccumulatorsPass
    : moe::impl::MoEPromoteReductionAccumulatorsBase<
          MoEPromoteReductionAccumulatorsPass> {
  void runOnOperation() override {
    SmallVector<scf::ForOp> loops;
    // Inner loops first: an inner accumulator promoted leaves its store
    // after the inner loop, in the outer loop's body.
    getOperation()->walk([&](scf::ForOp loop) { loops.push_back(loop); });
    for (scf::ForOp loop : loops)
      while (scf::ForOp promoted = promoteOne(loop))
        loop = promoted;
  }
};

} // namespace
