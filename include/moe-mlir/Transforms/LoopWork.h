//===- LoopWork.h - how much work a loop nest does --------------*- C++ -*-===//
//
// The CPU pipeline decides whether a loop is worth a worker-pool dispatch
// (a few microseconds) from the operations it executes: at compile time for
// static trip counts (-moe-distribute-parallel-loops), at run time for
// dynamic ones (-moe-outline-parallel-loops).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_LOOPWORK_H
#define MOE_MLIR_TRANSFORMS_LOOPWORK_H

#include "mlir/IR/Block.h"
#include "mlir/IR/Value.h"

namespace mlir::moe {

/// Trips assumed for a loop whose trip count is only known at run time:
/// enough to be worth the pool.
constexpr int64_t kUnknownTripCount = 1 << 20;

/// `a * b`, saturating at INT64_MAX.
int64_t saturatingMul(int64_t a, int64_t b);

/// Trips of a loop from `lb` to `ub` by `step`, or kUnknownTripCount when
/// one of them is not a constant.
int64_t estimateTripCount(Value lb, Value ub, Value step);

/// Operations executed by one run of `block`, nested loops' trips counted
/// (unknown ones as kUnknownTripCount), branches as their larger side.
int64_t estimateWork(Block &block);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_LOOPWORK_H
