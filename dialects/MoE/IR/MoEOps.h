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

#endif // MOE_IR_MOEOPS_H
