//===- ParallelizeLoopNests.cpp - host loop nests to scf.parallel ---------===//
//
// After bufferization, what the importer writes as loops (scatters, NonZero)
// and what linalg leaves as loops (reductions to a scalar) are scf.for nests
// of loads and stores. On the cuda target the host must not touch buffers
// (they are device memory), and upstream maps only scf.parallel to GPU
// kernels. This pass proves, per loop of a nest's perfectly nested band,
// that its iterations write disjoint elements, and rebuilds the nest as an
// scf.parallel over those loops around the remaining sequential ones, e.g.
// a scatter into [T, H] runs a thread per column, each applying its updates
// in the original order (deterministic, no atomics). Linalg ops without
// parallel loops (rank 0, or reductions of everything) would lower to such
// sequential code; they are wrapped before they are lowered.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPARALLELIZELOOPNESTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEParallelizeLoopNestsPass
    : moe::impl::MoEParallelizeLoopNestsBase<MoEParallelizeLoopNestsPass> {
  using Base::Base;
  void runOnOperation() override;
};

/// One memref.load or memref.store of the nest.
struct Access {
  Value memref;
  ValueRange indices;
  bool write;
};

/// The value owning the memory `memref` views: an allocation, a global, a
/// function argument, or whatever the view chain starts from.
Value rootOf(Value memref) {
  while (auto view = memref.getDefiningOp<ViewLikeOpInterface>())
    memref = view.getViewSource();
  return memref;
}

/// True when the memory of `root` is known to be its own: a fresh
/// allocation, a global, or an entry-block argument of a public function
/// (the runtime passes every argument its own buffer, docs/Runtime.md).
bool isDistinctAllocation(Value root) {
  if (auto arg = dyn_cast<BlockArgument>(root))
    return isa<FunctionOpInterface>(arg.getOwner()->getParentOp()) &&
           arg.getOwner()->isEntryBlock();
  return isa_and_nonnull<memref::AllocOp, memref::AllocaOp, gpu::AllocOp,
                         memref::GetGlobalOp>(root.getDefiningOp());
}

bool mayAlias(Value a, Value b) {
  Value ra = rootOf(a), rb = rootOf(b);
  if (ra == rb)
    return true;
  if (!isDistinctAllocation(ra) || !isDistinctAllocation(rb))
    return true;
  auto ga = ra.getDefiningOp<memref::GetGlobalOp>();
  auto gb = rb.getDefiningOp<memref::GetGlobalOp>();
  return ga && gb && ga.getName() == gb.getName();
}

/// Collects the nest's accesses; fails on anything a kernel could not run
/// or that this analysis does not see through (calls, allocations, copies,
/// views created inside the nest, other region ops).
LogicalResult collectAccesses(scf::ForOp nest, SmallVectorImpl<Access> &out) {
  WalkResult result = nest.getBody()->walk([&](Operation *op) {
    if (auto load = dyn_cast<memref::LoadOp>(op)) {
      out.push_back({load.getMemRef(), load.getIndices(), false});
      return WalkResult::advance();
    }
    if (auto store = dyn_cast<memref::StoreOp>(op)) {
      out.push_back({store.getMemRef(), store.getIndices(), true});
      return WalkResult::advance();
    }
    if (op->getNumRegions() && !isa<scf::ForOp, scf::IfOp>(op))
      return WalkResult::interrupt();
    if (!isa<scf::ForOp, scf::IfOp>(op) && !isMemoryEffectFree(op))
      return WalkResult::interrupt();
    if (!isa<memref::DimOp>(op) &&
        llvm::any_of(op->getOperandTypes(), llvm::IsaPred<BaseMemRefType>))
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

/// True when distinct values of `iv` never make two accesses of the nest
/// (one of them a write) meet in memory: every buffer written is accessed
/// only through one memref value, with `iv` itself as the index of one
/// dimension whose stride is not zero.
bool isParallelIn(Value iv, ArrayRef<Access> accesses) {
  for (const Access &write : accesses) {
    if (!write.write)
      continue;
    auto type = cast<MemRefType>(write.memref.getType());
    SmallVector<int64_t> strides;
    int64_t offset;
    if (failed(type.getStridesAndOffset(strides, offset)))
      return false;
    std::optional<int64_t> dim;
    for (int64_t d = 0, e = type.getRank(); d < e && !dim; ++d) {
      // A dynamic stride is a product of sizes (so not zero while there
      // are accesses) only in the identity layout.
      bool nonZeroStride =
          strides[d] != 0 &&
          (!ShapedType::isDynamic(strides[d]) || type.getLayout().isIdentity());
      if (!nonZeroStride || write.indices[d] != iv)
        continue;
      bool everyAccess = llvm::all_of(accesses, [&](const Access &other) {
        if (!mayAlias(other.memref, write.memref))
          return true;
        return other.memref == write.memref && other.indices[d] == iv;
      });
      if (everyAccess)
        dim = d;
    }
    if (!dim)
      return false;
  }
  return true;
}

/// The perfectly nested loops from `outer` down: each loop without
/// iter_args holding only the next, all with bounds defined above `outer`
/// (so that they may be reordered).
SmallVector<scf::ForOp> perfectBand(scf::ForOp outer) {
  SmallVector<scf::ForOp> band;
  for (scf::ForOp loop = outer; loop;) {
    if (loop.getNumRegionIterArgs() != 0)
      break;
    bool invariant = llvm::none_of(
        ValueRange{loop.getLowerBound(), loop.getUpperBound(), loop.getStep()},
        [&](Value v) {
          return outer->isAncestor(v.getParentRegion()->getParentOp());
        });
    if (!invariant)
      break;
    band.push_back(loop);
    Block *body = loop.getBody();
    if (body->getOperations().size() != 2)
      break;
    loop = dyn_cast<scf::ForOp>(body->front());
  }
  return band;
}

/// True for an op inside code that runs in parallel or on the device
/// already.
bool inParallelRegion(Operation *op) {
  for (Operation *parent = op->getParentOp(); parent;
       parent = parent->getParentOp())
    if (isa<scf::ForOp, scf::ParallelOp, scf::ForallOp, gpu::LaunchOp,
            gpu::GPUModuleOp>(parent))
      return true;
  return false;
}

/// Rebuilds `nest` as an scf.parallel over its parallel band loops; the
/// sequential band loops keep their order inside. With none parallel and
/// `wrapSequential`, the nest runs as the one iteration of an scf.parallel.
void parallelize(scf::ForOp nest, bool wrapSequential) {
  SmallVector<Access> accesses;
  if (!nest->use_empty() || failed(collectAccesses(nest, accesses)) ||
      accesses.empty())
    return;
  SmallVector<scf::ForOp> band = perfectBand(nest);
  SmallVector<scf::ForOp> parallel, sequential;
  for (scf::ForOp loop : band)
    (isParallelIn(loop.getInductionVar(), accesses) ? parallel : sequential)
        .push_back(loop);
  if (parallel.empty() && !wrapSequential)
    return;

  OpBuilder b(nest);
  Location loc = nest.getLoc();
  IRMapping map;
  if (parallel.empty()) {
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto wrapper = scf::ParallelOp::create(b, loc, zero, one, one);
    b.setInsertionPoint(wrapper.getBody()->getTerminator());
    b.clone(*nest, map);
    nest.erase();
    return;
  }
  SmallVector<Value> lbs, ubs, steps;
  for (scf::ForOp loop : parallel) {
    lbs.push_back(loop.getLowerBound());
    ubs.push_back(loop.getUpperBound());
    steps.push_back(loop.getStep());
  }
  auto par = scf::ParallelOp::create(b, loc, lbs, ubs, steps);
  for (auto [loop, iv] : llvm::zip(parallel, par.getInductionVars()))
    map.map(loop.getInductionVar(), iv);
  b.setInsertionPoint(par.getBody()->getTerminator());
  for (scf::ForOp loop : sequential) {
    auto inner = scf::ForOp::create(b, loop.getLoc(), loop.getLowerBound(),
                                    loop.getUpperBound(), loop.getStep());
    map.map(loop.getInductionVar(), inner.getInductionVar());
    b.setInsertionPoint(inner.getBody()->getTerminator());
  }
  for (Operation &op : band.back().getBody()->without_terminator())
    b.clone(op, map);
  nest.erase();
}

/// A linalg op on buffers without parallel loops (a fill of a scalar, a
/// sum of everything) lowers to straight-line code or an scf.for nest that
/// no scf.parallel holds: it gets a one-iteration scf.parallel of its own.
void wrapSequentialLinalgOp(linalg::LinalgOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  auto wrapper = scf::ParallelOp::create(b, loc, zero, one, one);
  op->moveBefore(wrapper.getBody()->getTerminator());
}

void MoEParallelizeLoopNestsPass::runOnOperation() {
  SmallVector<scf::ForOp> nests;
  SmallVector<linalg::LinalgOp> sequentialOps;
  getOperation()->walk([&](Operation *op) {
    if (inParallelRegion(op))
      return;
    if (auto loop = dyn_cast<scf::ForOp>(op))
      nests.push_back(loop);
    auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
    if (wrapSequential && linalgOp && linalgOp.hasPureBufferSemantics() &&
        linalgOp.getNumParallelLoops() == 0)
      sequentialOps.push_back(linalgOp);
  });
  for (scf::ForOp nest : nests)
    parallelize(nest, wrapSequential);
  for (linalg::LinalgOp op : sequentialOps)
    wrapSequentialLinalgOp(op);
}

} // namespace
