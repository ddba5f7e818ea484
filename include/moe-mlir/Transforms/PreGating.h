//===- PreGating.h - a layer's routing guessed a layer early ----*- C++ -*-===//
//
// Pre-gating (Pre-gated MoE): layer L + 1's router run on layer L's tokens
// guesses L + 1's choice before its input exists, since the residual stream
// changes little from one layer to the next. -moe-record-routing reports
// such guesses to the routing profile, -moe-prefetch-experts reads the
// guessed experts' weights ahead.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_PREGATING_H
#define MOE_MLIR_TRANSFORMS_PREGATING_H

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Dominance.h"

namespace mlir::moe {

/// `value` usable before `user`: itself where it dominates `user`, a copy
/// made at `builder`'s insertion point when it is a constant, else null.
Value availableBefore(OpBuilder &builder, DominanceInfo &dominance, Value value,
                      Operation *user);

/// A copy of `next` (its k, scoring, groups...) at `builder`'s insertion
/// point, after `current`, routing `current`'s tokens: its ids are the guess
/// of `next`'s choice. Null when the routes do not both take their router
/// weight (the fused-router form) or their tokens differ in hidden size or
/// type, or when `next`'s router weight or score bias is not available
/// there (it must dominate `current` or be a constant, which is copied).
RouteOp buildPreGatedRoute(OpBuilder &builder, DominanceInfo &dominance,
                           RouteOp current, RouteOp next);

/// The routes of `func` in order, its layers in order, without the guesses
/// buildPreGatedRoute made (routes whose ids only predicted reports and
/// prefetches read), so that passes adding guesses number layers alike
/// whichever runs first.
SmallVector<RouteOp> layerRoutes(func::FuncOp func);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_PREGATING_H
