//===- LoopWork.cpp - how much work a loop nest does ------------------------===//

#include "moe-mlir/Transforms/LoopWork.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;

int64_t moe::saturatingMul(int64_t a, int64_t b) {
  int64_t product;
  if (__builtin_mul_overflow(a, b, &product))
    return INT64_MAX;
  return product;
}

int64_t moe::estimateTripCount(Value lb, Value ub, Value step) {
  std::optional<int64_t> l = getConstantIntValue(lb);
  std::optional<int64_t> u = getConstantIntValue(ub);
  std::optional<int64_t> s = getConstantIntValue(step);
  if (!l || !u || !s || *s <= 0)
    return kUnknownTripCount;
  return *u <= *l ? 0 : (*u - *l + *s - 1) / *s;
}

int64_t moe::estimateWork(Block &block) {
  int64_t work = 0;
  for (Operation &op : block) {
    int64_t inner = 1;
    for (Region &region : op.getRegions())
      for (Block &nested : region)
        inner = std::max(inner, estimateWork(nested));
    int64_t trips = 1;
    if (auto loop = dyn_cast<scf::ForOp>(op))
      trips = estimateTripCount(loop.getLowerBound(), loop.getUpperBound(),
                                loop.getStep());
    else if (auto loop = dyn_cast<scf::ParallelOp>(op))
      for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(),
                                           loop.getUpperBound(),
                                           loop.getStep()))
        trips = saturatingMul(trips, estimateTripCount(lb, ub, step));
    // Saturating: a huge term (unknown trip counts nest) must not wrap the
    // sum around to a small or negative estimate.
    int64_t term = saturatingMul(trips, inner);
    work = term >= INT64_MAX - 1 - work ? INT64_MAX - 1 : work + term;
  }
  return work;
}
