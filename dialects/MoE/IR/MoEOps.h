//===- MoEOps.h - moe dialect operations ------------------------*- C++ -*-===//

#ifndef MOE_IR_MOEOPS_H
#define MOE_IR_MOEOPS_H

#include "MoE/IR/MoEDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "MoE/IR/MoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "MoE/IR/MoEAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "MoE/IR/MoETypes.h.inc"

#define GET_OP_CLASSES
#include "MoE/IR/MoEOps.h.inc"

namespace mlir::moe {

/// Steps of k that one row of a panel-major weight panel holds (see
/// moe.expert's `panel_width`): 2 for bf16, stored `[E, N / P, K / 2, P, 2]`
/// so that a row holds each column's pair of k as AVX512-BF16's
/// `vdpbf16ps` reads them; 4 for the packed bytes of quantised weights,
/// `[E, N / P, Kb / 4, P, 4]`, a row holding each column's 4-byte word as
/// AVX512-VNNI's `vpdpbusd` reads them; else 1 (`[E, N / P, K, P]`).
int64_t panelStepsOfK(Type elementType);

} // namespace mlir::moe

#endif // MOE_IR_MOEOPS_H
