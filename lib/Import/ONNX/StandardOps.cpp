//===- StandardOps.cpp - ai.onnx ops into upstream tensor-level ops ---------===//
//
// Each ai.onnx op becomes upstream linalg/tensor/arith/math ops on tensors,
// which the CPU pipeline bufferizes and lowers like the rest of a module.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

LogicalResult mlir::moe::onnx_import::importStandardNode(NodeContext &node) {
  return node.fail("op is not supported yet");
}
