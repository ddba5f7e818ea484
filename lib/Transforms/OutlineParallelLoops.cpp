//===- OutlineParallelLoops.cpp - parallel loops to runtime calls -----------===//
//
// Generated modules get their threads from the runtime's worker pool rather
// than from an OpenMP runtime, so that a .so needs nothing but libc, libm and
// libmoe_runtime.so. Each outermost one-dimensional scf.parallel becomes a
// private function over a chunk of its iteration space plus a
// moe.parallel_call; values the body uses are passed as captures, constants
// are rematerialised inside.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "moe-mlir/Transforms/LoopWork.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEOUTLINEPARALLELLOOPS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct MoEOutlineParallelLoopsPass
    : moe::impl::MoEOutlineParallelLoopsBase<MoEOutlineParallelLoopsPass> {
  using MoEOutlineParallelLoopsBase::MoEOutlineParallelLoopsBase;
  void runOnOperation() override;
};

/// Outlines `loop` (1-D, no reductions) out of `func`; returns the new
/// function. A loop whose trip count is only known at run time calls it
/// directly over the whole range when count * (its body's work) is below
/// `minWork` (a decode step's per-head softmax: a dispatch would cost more
/// than the rows).
func::FuncOp outline(scf::ParallelOp loop, func::FuncOp func, unsigned index,
                     int64_t minWork) {
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  MLIRContext *ctx = loop.getContext();

  // Everything the body, bounds and step use from above, except constants.
  SetVector<Value> used;
  getUsedValuesDefinedAbove(loop.getRegion(), used);
  for (Value v : {loop.getLowerBound()[0], loop.getStep()[0]})
    used.insert(v);
  SmallVector<Value> captures;
  SmallVector<Operation *> constants;
  for (Value v : used) {
    Operation *def = v.getDefiningOp();
    if (def && def->hasTrait<OpTrait::ConstantLike>())
      constants.push_back(def);
    else
      captures.push_back(v);
  }

  SmallVector<Type> argTypes = llvm::to_vector(ValueRange(captures).getTypes());
  Type indexType = b.getIndexType();
  argTypes.append({indexType, indexType});
  std::string name =
      (func.getSymName() + "_parallel" + Twine(index)).str();
  OpBuilder moduleBuilder(func);
  moduleBuilder.setInsertionPointAfter(func);
  auto outlined = func::FuncOp::create(moduleBuilder, loc, name,
                                       FunctionType::get(ctx, argTypes, {}));
  outlined.setPrivate();
  // One copy of the body: without this LLVM inlined it into both its
  // callers (the pool's trampoline and, for run-time trip counts, the
  // direct call of the serial path), compiling every loop twice.
  outlined->setAttr("passthrough",
                    moduleBuilder.getArrayAttr(
                        {moduleBuilder.getStringAttr("noinline")}));
  Block *entry = outlined.addEntryBlock();
  OpBuilder ob = OpBuilder::atBlockBegin(entry);
  IRMapping map;
  for (Operation *c : constants)
    ob.clone(*c, map);
  for (auto [capture, arg] : llvm::zip(captures, entry->getArguments()))
    map.map(capture, arg);
  Value begin = entry->getArgument(captures.size());
  Value end = entry->getArgument(captures.size() + 1);
  Value one = arith::ConstantIndexOp::create(ob, loc, 1);
  Value lb = map.lookup(loop.getLowerBound()[0]);
  Value step = map.lookup(loop.getStep()[0]);
  auto chunk = scf::ForOp::create(ob, loc, begin, end, one);
  ob.setInsertionPoint(chunk.getBody()->getTerminator());
  // iv = lb + i * step for the chunk's iteration numbers i.
  Value iv = arith::AddIOp::create(
      ob, loc, lb, arith::MulIOp::create(ob, loc, chunk.getInductionVar(), step));
  map.map(loop.getInductionVars()[0], iv);
  for (Operation &op : loop.getBody()->without_terminator())
    ob.clone(op, map);
  ob.setInsertionPointToEnd(entry);
  func::ReturnOp::create(ob, loc);

  // count = ceildiv(ub - lb, step), for non-negative trip counts.
  Value count = arith::CeilDivSIOp::create(
      b, loc,
      arith::SubIOp::create(b, loc, loop.getUpperBound()[0],
                            loop.getLowerBound()[0]),
      loop.getStep()[0]);
  count = arith::MaxSIOp::create(
      b, loc, count, arith::ConstantIndexOp::create(b, loc, 0));
  int64_t perIteration = std::max<int64_t>(1, estimateWork(*loop.getBody()));
  bool dynamicCount =
      !getConstantIntValue(loop.getLowerBound()[0]) ||
      !getConstantIntValue(loop.getUpperBound()[0]) ||
      !getConstantIntValue(loop.getStep()[0]);
  if (dynamicCount && perIteration < minWork) {
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value enough = arith::ConstantIndexOp::create(
        b, loc, (minWork + perIteration - 1) / perIteration);
    Value small = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        count, enough);
    SmallVector<Value> args(captures);
    args.append({zero, count});
    scf::IfOp::create(
        b, loc, small,
        [&](OpBuilder &then, Location l) {
          func::CallOp::create(then, l, outlined, args);
          scf::YieldOp::create(then, l);
        },
        [&](OpBuilder &otherwise, Location l) {
          ParallelCallOp::create(otherwise, l, name, count, captures);
          scf::YieldOp::create(otherwise, l);
        });
  } else {
    ParallelCallOp::create(b, loc, name, count, captures);
  }
  loop.erase();
  return outlined;
}

/// Erases outlined functions identical to an earlier one (same signature,
/// same body up to locations) and points their calls at that one. The
/// layers of a decoder repeat the same loops over buffers of the same
/// shapes (only the captured weights differ): without this every layer's
/// copy of every loop went through LLVM again.
void mergeIdenticalFunctions(ModuleOp module,
                             ArrayRef<func::FuncOp> outlined) {
  llvm::DenseMap<std::pair<Type, size_t>, SmallVector<func::FuncOp>> kept;
  llvm::StringMap<StringRef> replacement;
  SmallVector<func::FuncOp> erased;
  for (func::FuncOp f : outlined) {
    size_t size = 0;
    f.walk([&](Operation *) { ++size; });
    auto &candidates = kept[{f.getFunctionType(), size}];
    auto same = llvm::find_if(candidates, [&](func::FuncOp k) {
      return OperationEquivalence::isRegionEquivalentTo(
          &k.getBody(), &f.getBody(),
          OperationEquivalence::Flags::IgnoreLocations);
    });
    if (same == candidates.end()) {
      candidates.push_back(f);
      continue;
    }
    replacement[f.getSymName()] = same->getSymName();
    erased.push_back(f);
  }
  if (erased.empty())
    return;
  module.walk([&](ParallelCallOp call) {
    auto it = replacement.find(call.getCallee());
    if (it != replacement.end())
      call.setCalleeAttr(FlatSymbolRefAttr::get(call.getContext(), it->second));
  });
  module.walk([&](func::CallOp call) {
    auto it = replacement.find(call.getCallee());
    if (it != replacement.end())
      call.setCalleeAttr(FlatSymbolRefAttr::get(call.getContext(), it->second));
  });
  for (func::FuncOp f : erased)
    f.erase();
}

void MoEOutlineParallelLoopsPass::runOnOperation() {
  ModuleOp module = getOperation();
  SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
  SmallVector<func::FuncOp> outlined;
  for (func::FuncOp func : funcs) {
    SmallVector<scf::ParallelOp> loops;
    func.walk([&](scf::ParallelOp loop) {
      if (!loop->getParentOfType<scf::ParallelOp>())
        loops.push_back(loop);
    });
    unsigned index = 0;
    for (scf::ParallelOp loop : loops) {
      if (loop.getNumLoops() != 1 || loop.getNumReductions() != 0) {
        loop.emitError("only one-dimensional parallel loops without "
                       "reductions can run on the runtime's worker pool");
        return signalPassFailure();
      }
      outlined.push_back(outline(loop, func, index++, minWork));
    }
  }
  mergeIdenticalFunctions(module, outlined);
}

} // namespace
