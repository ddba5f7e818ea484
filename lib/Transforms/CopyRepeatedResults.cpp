//===- CopyRepeatedResults.cpp - a tensor per function result ---------------===//
//
// Each result of a compiled function becomes an out-parameter the caller
// allocates; a value returned twice must therefore be two tensors before
// bufferization.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECOPYREPEATEDRESULTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct CopyRepeatedResults
    : moe::impl::MoECopyRepeatedResultsBase<CopyRepeatedResults> {
  void runOnOperation() override {
    getOperation().walk([](func::ReturnOp ret) {
      llvm::SmallDenseSet<Value> seen;
      OpBuilder builder(ret);
      for (OpOperand &operand : ret->getOpOperands()) {
        Value value = operand.get();
        auto type = dyn_cast<RankedTensorType>(value.getType());
        if (!type || seen.insert(value).second)
          continue;
        // The copy takes its sizes from the source.
        operand.set(bufferization::AllocTensorOp::create(
            builder, ret.getLoc(), type, ValueRange(), /*copy=*/value,
            /*size_hint=*/Value(), /*memory_space=*/Attribute()));
      }
    });
  }
};

} // namespace
