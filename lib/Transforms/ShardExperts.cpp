//===- ShardExperts.cpp - expert-parallel SPMD partitioning -----------------===//
//
// Makes each moe.layer one rank's part of an expert-parallel layer: the
// rank keeps ceil(E / P) experts' weights and its own tokens, and the layer
// carries #moe.expert_parallel so that decomposition exchanges tokens with
// the ranks that own their experts. What the launcher must hand each rank is
// recorded as `moe.split` argument and result attributes, which
// -moe-export-abi turns into the manifest's `split` fields.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "moe-mlir/Transforms/ConstantData.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESHARDEXPERTS
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr StringLiteral kGridName = "moe_ep";
constexpr StringLiteral kSplitAttr = "moe.split";

RankedTensorType withExperts(RankedTensorType type, int64_t experts) {
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = experts;
  return type.clone(shape);
}

class ShardExpertsPass
    : public moe::impl::MoEShardExpertsBase<ShardExpertsPass> {
public:
  using MoEShardExpertsBase::MoEShardExpertsBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (ranks < 1) {
      module.emitError() << "-moe-shard-experts: ranks must be at least 1, "
                            "got "
                         << static_cast<int64_t>(ranks);
      return signalPassFailure();
    }
    SmallVector<LayerOp> layers;
    module.walk([&](LayerOp layer) {
      if (!layer.getExpertParallelAttr())
        layers.push_back(layer);
    });
    if (layers.empty())
      return;
    FlatSymbolRefAttr grid = getOrCreateGrid(module);
    if (!grid)
      return signalPassFailure();
    for (LayerOp layer : layers)
      if (failed(shardLayer(layer, grid)))
        return signalPassFailure();
  }

private:
  FlatSymbolRefAttr getOrCreateGrid(ModuleOp module) {
    auto existing = module.lookupSymbol(kGridName);
    if (auto grid = dyn_cast_or_null<shard::GridOp>(existing)) {
      if (grid.getRank() != 1 || grid.getShape()[0] != ranks) {
        grid.emitError() << "@" << kGridName << " exists with another "
                         << "shape than the " << static_cast<int64_t>(ranks)
                         << " ranks asked for";
        return {};
      }
      return FlatSymbolRefAttr::get(grid.getSymNameAttr());
    }
    if (existing) {
      existing->emitError() << "symbol @" << kGridName
                            << " is needed for the expert-parallel grid";
      return {};
    }
    OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
    auto grid = shard::GridOp::create(builder, module.getLoc(), kGridName,
                                      ArrayRef<int64_t>{ranks});
    return FlatSymbolRefAttr::get(grid.getSymNameAttr());
  }

  LogicalResult shardLayer(LayerOp layer, FlatSymbolRefAttr grid) {
    auto func = layer->getParentOfType<func::FuncOp>();
    if (!func || layer->getBlock() != &func.getBody().front())
      return layer.emitOpError(
          "can only be made expert-parallel in the entry block of a "
          "function");
    auto fc1Type = cast<RankedTensorType>(layer.getFc1().getType());
    if (fc1Type.isDynamicDim(0))
      return layer.emitOpError("needs a static number of experts to be made "
                               "expert-parallel");
    if (layer.getCapacityFactor())
      return layer.emitOpError(
          "with capacity_factor cannot be made expert-parallel: capacities "
          "are defined over all tokens, but each rank routes only its own");
    if (layer.getScaleInput())
      return layer.emitOpError(
          "with scale_input cannot be made expert-parallel yet: the "
          "exchange sends unscaled rows");
    int64_t numExperts = fc1Type.getDimSize(0);
    auto ep = ExpertParallelAttr::get(&getContext(), grid, ranks, numExperts);
    int64_t perRank = ep.getExpertsPerRank();

    Value rank;
    for (OpOperand *operand : layer.getExpertStackedOperands()) {
      Value value = operand->get();
      auto type = cast<RankedTensorType>(value.getType());
      RankedTensorType shardType = withExperts(type, perRank);
      if (auto arg = dyn_cast<BlockArgument>(value);
          arg && arg.getOwner() == &func.getBody().front()) {
        for (OpOperand &use : arg.getUses())
          if (use.getOwner() != layer.getOperation())
            return use.getOwner()->emitOpError()
                   << "uses expert weight argument #" << arg.getArgNumber()
                   << ", which -moe-shard-experts splits over the ranks";
        arg.setType(shardType);
        func.setArgAttr(arg.getArgNumber(), kSplitAttr,
                        StringAttr::get(&getContext(), "experts"));
        continue;
      }
      auto constant = value.getDefiningOp<arith::ConstantOp>();
      if (!constant)
        return layer.emitOpError()
               << "expert weights must be function arguments or constants "
                  "to be split over ranks; operand #"
               << operand->getOperandNumber() << " is neither";
      std::optional<SmallVector<char>> bytes =
          elementBytes(cast<ElementsAttr>(constant.getValue()), type);
      if (!bytes)
        return constant.emitOpError(
            "cannot be split over ranks: its elements are not available as "
            "bytes");
      OpBuilder builder(layer);
      if (!rank) {
        builder.setInsertionPointToStart(&func.getBody().front());
        rank = shard::ProcessLinearIndexOp::create(builder, layer.getLoc(),
                                                   grid.getValue());
        builder.setInsertionPoint(layer);
      }
      operand->set(selectRankShard(builder, constant.getLoc(), rank, ep,
                                   shardType, *bytes));
    }

    // Tokens: the rank's own rows of the layer's input and logits, and of
    // what the function returns.
    for (Value tokens : {layer.getInput(), layer.getLogits()})
      if (auto arg = dyn_cast_if_present<BlockArgument>(tokens);
          arg && arg.getOwner() == &func.getBody().front())
        func.setArgAttr(arg.getArgNumber(), kSplitAttr,
                        StringAttr::get(&getContext(), "tokens"));
    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    for (OpOperand &result : ret->getOpOperands()) {
      if (result.get() != layer.getResult())
        return ret.emitOpError()
               << "result #" << result.getOperandNumber()
               << " of an expert-parallel function must be the layer's "
                  "output, which ranks gather by token rows";
      func.setResultAttr(result.getOperandNumber(), kSplitAttr,
                         StringAttr::get(&getContext(), "tokens"));
    }
    func.setFunctionType(FunctionType::get(
        &getContext(), func.getBody().front().getArgumentTypes(),
        func.getResultTypes()));
    layer.setExpertParallelAttr(ep);
    return success();
  }

  /// One constant per rank holding its experts (zero padding after them),
  /// chosen at run time by the rank.
  Value selectRankShard(OpBuilder &builder, Location loc, Value rank,
                        ExpertParallelAttr ep, RankedTensorType shardType,
                        ArrayRef<char> bytes) {
    int64_t expertBytes =
        static_cast<int64_t>(bytes.size()) / ep.getNumExperts();
    SmallVector<int64_t> cases;
    for (int64_t r = 0; r + 1 < ranks; ++r)
      cases.push_back(r);
    auto select = scf::IndexSwitchOp::create(builder, loc, TypeRange{shardType},
                                             rank, cases, cases.size());
    for (int64_t r = 0; r < ranks; ++r) {
      SmallVector<char> shard(shardType.getNumElements() *
                                  (shardType.getElementTypeBitWidth() / 8),
                              0);
      int64_t first = ep.getFirstExpert(r), last = ep.getFirstExpert(r + 1);
      std::copy(bytes.begin() + first * expertBytes,
                bytes.begin() + last * expertBytes, shard.begin());
      // The last rank is the default region: index_switch needs one.
      Region &region = r + 1 < ranks ? select.getCaseRegions()[r]
                                     : select.getDefaultRegion();
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&region.emplaceBlock());
      Value value = arith::ConstantOp::create(
          builder, loc,
          DenseElementsAttr::getFromRawBuffer(shardType, shard));
      scf::YieldOp::create(builder, loc, value);
    }
    return select.getResult(0);
  }
};

} // namespace
