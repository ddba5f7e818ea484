//===- ShardToMoERuntime.cpp - shard process queries to the runtime ---------===//
//
// Expert-parallel modules learn their rank from the communicator the
// launcher installs in the runtime, so the module itself links no MPI or
// NCCL and runs under whichever engine the runtime was given.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTSHARDTOMOERUNTIME
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct ConvertShardToMoERuntimePass
    : moe::impl::ConvertShardToMoERuntimeBase<ConvertShardToMoERuntimePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    SmallVector<shard::ProcessLinearIndexOp> queries;
    module.walk([&](shard::ProcessLinearIndexOp op) { queries.push_back(op); });
    for (shard::ProcessLinearIndexOp query : queries) {
      auto grid = symbols.lookupNearestSymbolFrom<shard::GridOp>(
          query, query.getGridAttr());
      if (!grid || grid.getRank() != 1 ||
          ShapedType::isDynamic(grid.getShape()[0])) {
        query.emitOpError("needs a one-dimensional shard.grid of static size "
                          "to be lowered to the moe runtime");
        return signalPassFailure();
      }
      OpBuilder builder(query);
      Location loc = query.getLoc();
      func::FuncOp callee = rankFunction(module, loc);
      Value ranks =
          arith::ConstantIntOp::create(builder, loc, grid.getShape()[0], 64);
      Value rank =
          func::CallOp::create(builder, loc, callee, ValueRange{ranks})
              .getResult(0);
      Value index = arith::IndexCastOp::create(builder, loc,
                                               builder.getIndexType(), rank);
      query.getResult().replaceAllUsesWith(index);
      query.erase();
    }
    for (auto grid : llvm::make_early_inc_range(module.getOps<shard::GridOp>()))
      if (SymbolTable::symbolKnownUseEmpty(grid, module))
        grid.erase();
  }

  func::FuncOp rankFunction(ModuleOp module, Location loc) {
    constexpr StringLiteral name = "moe_rt_comm_rank";
    if (auto existing = module.lookupSymbol<func::FuncOp>(name))
      return existing;
    OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
    Type i64 = builder.getI64Type();
    auto func = func::FuncOp::create(builder, loc, name,
                                     builder.getFunctionType({i64}, {i64}));
    func.setPrivate();
    return func;
  }
};

} // namespace
