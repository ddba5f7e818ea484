//===- MoEDialect.cpp - moe dialect registration ----------------------------===//

#include "MoE/IR/MoEDialect.h"
#include "MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "MoE/IR/MoEDialect.cpp.inc"
#include "MoE/IR/MoEEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "MoE/IR/MoEAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "MoE/IR/MoETypes.cpp.inc"

void MoEDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "MoE/IR/MoEAttrs.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "MoE/IR/MoETypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "MoE/IR/MoEOps.cpp.inc"
      >();
}
