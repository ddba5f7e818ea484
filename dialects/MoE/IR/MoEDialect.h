//===- MoEDialect.h - moe dialect -------------------------------*- C++ -*-===//

#ifndef MOE_IR_MOEDIALECT_H
#define MOE_IR_MOEDIALECT_H

#include "mlir/IR/Dialect.h"

#include "MoE/IR/MoEDialect.h.inc"

#endif // MOE_IR_MOEDIALECT_H
