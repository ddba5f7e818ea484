//===- StageKernels.h - per-item bodies shared by the backends --*- C++ -*-===//
//
// The CPU lowering (bufferization of the stage ops) and the GPU lowering
// (-convert-moe-to-gpu) run the same scalar code per token and per element;
// only the loops or threads around it differ. These emitters produce that
// shared code at the builder's insertion point, on memrefs.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_STAGEKERNELS_H
#define MOE_MLIR_TRANSFORMS_STAGEKERNELS_H

#include "MoE/IR/MoEOps.h"
#include "moe-mlir/Transforms/KernelEmitter.h"

namespace mlir::moe {

/// Arithmetic happens in f64 for f64 data and in f32 otherwise.
Type computeTypeFor(Type elementType);

/// The router's per-token scratch. Every buffer is statically sized (E, k
/// and the group count are static), so it can live on the stack of a CPU
/// loop or in a GPU thread's local memory, and is reused token after token.
struct RouteScratch {
  Value scores, select, taken, kept;
  /// Only with num_groups > 1.
  Value groupScores, groupTaken, excluded;

  /// Allocates the scratch at the insertion point: with memref.alloca, or
  /// with memref.alloc when `onHeap` (in the body of a parallel loop, where
  /// a stack allocation would grow the worker's stack every iteration; the
  /// buffer-deallocation pipeline frees it).
  static RouteScratch allocate(KernelEmitter &e, RouteOp route,
                               bool onHeap = false);
};

/// Routes token `t`: reads `logits[t, :]` (and `bias`, which may be null)
/// and writes `weights[t, :]` and `ids[t, :]` as moe.route specifies. With
/// `vectorLanes` (a CPU caller) the scores and the top-k selection work on
/// vectors of that many f32 lanes where the route allows (f32 scores,
/// neither groups nor SparseMixer, contiguous rows); otherwise, and on the
/// GPU, element by element.
void emitRouteToken(KernelEmitter &e, RouteOp route, Value logits, Value bias,
                    Value weights, Value ids, Value t,
                    const RouteScratch &scratch, int64_t vectorLanes = 0);

/// An i32 row offset of moe.expert's `offsets` as an index clamped to
/// [0, numRows]: offsets may come from callers, and a bad one must not index
/// out of bounds.
Value clampRowOffset(KernelEmitter &e, Value offset, Value numRows);

/// Emits the scalar activation `h = act(gate)` of `expert`, or its gated
/// form `act(gate) * linear` / SwiGLU when `linear` is given.
Value emitActivation(KernelEmitter &e, ExpertOp expert, Value gate,
                     Value linear);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_STAGEKERNELS_H
