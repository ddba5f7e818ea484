//===- ElementConversion.h - tensors converted elementwise ------*- C++ -*-===//
//
// Decomposition widens half-precision tokens and rounds f32 ones to bf16
// rows; the weight conversion rounds a matmul's activations. All of them
// build the same elementwise linalg.generic.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TRANSFORMS_ELEMENTCONVERSION_H
#define MOE_MLIR_TRANSFORMS_ELEMENTCONVERSION_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"

namespace mlir::moe {

/// The ranked tensor `value` converted elementwise to the float type
/// `elementType` (arith.extf or arith.truncf in a linalg.generic, which
/// bufferizes); `value` itself when it has that element type.
Value convertElements(OpBuilder &b, Location loc, Value value,
                      Type elementType);

} // namespace mlir::moe

#endif // MOE_MLIR_TRANSFORMS_ELEMENTCONVERSION_H
