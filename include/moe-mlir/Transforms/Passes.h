//===- Passes.h - moe-mlir transformation passes ----------------*- C++ -*-===//

#ifndef MOE_MLIR_TRANSFORMS_PASSES_H
#define MOE_MLIR_TRANSFORMS_PASSES_H

#include "MoE/IR/MoEDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;

namespace moe {

#define GEN_PASS_DECL
#include "moe-mlir/Transforms/Passes.h.inc"

/// Adds the pattern rewriting moe.layer into the four stage ops (see the
/// options of -moe-decompose-layer).
void populateDecomposeLayerPatterns(
    RewritePatternSet &patterns, const MoEDecomposeLayerOptions &options = {});

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Transforms/Passes.h.inc"

} // namespace moe
} // namespace mlir

#endif // MOE_MLIR_TRANSFORMS_PASSES_H
