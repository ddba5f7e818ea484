//===- OverlapCommunication.cpp - pipeline expert-parallel exchanges --------===//
//
// An expert-parallel layer waits three times per exchange round: for the
// per-expert counts, for the rows, and for the results. Done once for all
// tokens, the ranks idle while rows travel and the links idle while experts
// compute. Splitting the tokens into chunks and interleaving the chunks'
// stages keeps both busy; the cost of doing so is that every chunk rereads
// the weights of the experts it touches and pays the exchanges' latency, so
// the number of chunks is a trade-off that a small cost model settles.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/FormatVariadic.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEOVERLAPCOMMUNICATION
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Stages of a chunk: each exchange's wait starts a new one.
constexpr int64_t kNumStages = 4;

/// The route ... combine chain of one expert-parallel layer, in program
/// order, with each op's stage.
struct ExchangeChain {
  RouteOp route;
  DispatchOp dispatch;
  CombineOp combine;
  ExpertOp expert;
  int64_t ranks = 0;
  SmallVector<Operation *> ops;
  DenseMap<Operation *, int64_t> stage;
};

/// Calls `fn` on every value `op` or an op nested in it uses.
void forEachUse(Operation *op, function_ref<void(Value)> fn) {
  op->walk([&](Operation *nested) {
    for (Value operand : nested->getOperands())
      fn(operand);
  });
}

/// The op of `block` that defines `value` or holds its definition.
Operation *definingOpIn(Block *block, Value value) {
  Operation *def = value.getDefiningOp();
  if (!def) {
    if (auto arg = dyn_cast<BlockArgument>(value))
      def = arg.getOwner()->getParentOp();
  }
  return def ? block->findAncestorOpInBlock(*def) : nullptr;
}

FailureOr<ExchangeChain> findChain(CombineOp combine) {
  ExchangeChain chain;
  chain.combine = combine;
  if (!combine.getExpertOutput().getDefiningOp<AllToAllWaitOp>())
    return failure();
  chain.route = combine.getIds().getDefiningOp<RouteOp>();
  chain.dispatch = combine.getSlotRows().getDefiningOp<DispatchOp>();
  Block *block = combine->getBlock();
  if (!chain.route || !chain.dispatch || chain.route->getBlock() != block ||
      chain.dispatch->getBlock() != block)
    return failure();

  // Forward from the route, restricted to what the combine needs.
  SmallVector<Operation *> forward;
  DenseSet<Operation *> inForward;
  for (Operation *op = chain.route; op; op = op->getNextNode()) {
    bool depends = op == chain.route.getOperation();
    forEachUse(op, [&](Value v) {
      if (Operation *def = definingOpIn(block, v))
        depends |= inForward.contains(def);
    });
    if (depends) {
      forward.push_back(op);
      inForward.insert(op);
    }
    if (op == combine.getOperation())
      break;
  }
  DenseSet<Operation *> needed{combine.getOperation()};
  for (Operation *op : llvm::reverse(forward)) {
    if (!needed.contains(op))
      continue;
    forEachUse(op, [&](Value v) {
      if (Operation *def = definingOpIn(block, v))
        needed.insert(def);
    });
  }
  for (Operation *op : forward)
    if (needed.contains(op))
      chain.ops.push_back(op);

  // Nothing but the combine's result may leave the chain: the chain is
  // replaced as a whole.
  DenseSet<Operation *> inChain(chain.ops.begin(), chain.ops.end());
  for (Operation *op : chain.ops) {
    if (op == combine.getOperation())
      continue;
    for (Operation *user : op->getUsers())
      if (!inChain.contains(block->findAncestorOpInBlock(*user)))
        return failure();
  }

  for (Operation *op : chain.ops) {
    int64_t stage = 0;
    forEachUse(op, [&](Value v) {
      if (Operation *def = definingOpIn(block, v); def && inChain.contains(def))
        stage = std::max(stage, chain.stage.lookup(def));
    });
    if (isa<AllToAllWaitOp>(op))
      ++stage;
    if (stage >= kNumStages)
      return failure();
    chain.stage[op] = stage;
    if (auto start = dyn_cast<AllToAllStartOp>(op)) {
      auto grid = SymbolTable::lookupNearestSymbolFrom<shard::GridOp>(
          op, start.getGridAttr());
      if (grid)
        chain.ranks = grid.getShape()[0];
    }
    if (auto expert = dyn_cast<ExpertOp>(op))
      chain.expert = expert;
  }
  if (!chain.expert || chain.ranks < 1)
    return failure();
  return chain;
}

/// Predicted times of a layer split into `chunks`, in microseconds.
struct Prediction {
  int64_t chunks;
  double dispatch, expert, ret, total;
};

class OverlapCommunicationPass
    : public moe::impl::MoEOverlapCommunicationBase<
          OverlapCommunicationPass> {
public:
  using MoEOverlapCommunicationBase::MoEOverlapCommunicationBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    SmallVector<CombineOp> combines;
    func.walk([&](CombineOp combine) { combines.push_back(combine); });
    for (CombineOp combine : combines) {
      FailureOr<ExchangeChain> chain = findChain(combine);
      if (failed(chain))
        continue;
      int64_t tokenCount = cast<RankedTensorType>(
                               chain->route.getLogits().getType())
                               .getDimSize(0);
      if (ShapedType::isDynamic(tokenCount))
        tokenCount = tokens;
      SmallVector<Prediction> predictions;
      for (int64_t c = 1; c <= std::max<int64_t>(maxChunks, 1); ++c)
        predictions.push_back(predict(*chain, tokenCount, c));
      int64_t chosen = chunks;
      if (chosen <= 0) {
        const Prediction &best =
            *llvm::min_element(predictions, [](const Prediction &a,
                                               const Prediction &b) {
              return a.total < b.total;
            });
        // Chunking has costs the model leaves out (smaller GEMMs, more
        // passes over the activations); only a clear predicted gain pays.
        chosen = best.total <= predictions.front().total * (1.0 - minGain)
                     ? best.chunks
                     : 1;
      }
      recordModel(*chain, predictions, chosen, tokenCount);
      if (chosen > 1)
        pipeline(*chain, chosen);
    }
  }

private:
  Prediction predict(ExchangeChain &chain, int64_t tokenCount,
                     int64_t numChunks) {
    ExpertOp expert = chain.expert;
    auto rowsType = cast<RankedTensorType>(expert.getRows().getType());
    auto fc1 = cast<RankedTensorType>(expert.getFc1().getType());
    auto fc2 = cast<RankedTensorType>(expert.getFc2().getType());
    int64_t k = cast<RankedTensorType>(chain.route.getIds().getType())
                    .getDimSize(1);
    int64_t hidden = rowsType.getDimSize(1);
    int64_t localExperts = fc1.getDimSize(0);
    double weightBits = fc1.getElementTypeBitWidth();
    if (QuantAttr quant = expert.getQuantAttr())
      weightBits = quant.getBits();
    // Logical [E, N, K] sizes: packed weights hold 8 / bits values a byte.
    double pack = expert.getQuantAttr() ? 8.0 / weightBits : 1.0;
    double fc1Values = fc1.getDimSize(1) * fc1.getDimSize(2) * pack;
    double fc2Values = fc2.getDimSize(1) * fc2.getDimSize(2) * pack;
    double fc3Values = 0;
    if (Value fc3 = expert.getFc3()) {
      auto fc3Type = cast<RankedTensorType>(fc3.getType());
      fc3Values = fc3Type.getDimSize(1) * fc3Type.getDimSize(2) * pack;
    }
    double expertValues = fc1Values + fc2Values + fc3Values;
    double rowBytes = hidden * (rowsType.getElementTypeBitWidth() / 8.0);
    double ranksD = static_cast<double>(chain.ranks);

    // Balanced routing: a rank receives as many rows as it sends, T * k,
    // of which (P - 1) / P cross the link.
    double rows = static_cast<double>(tokenCount) * k / numChunks;
    double linkBytes = rows * rowBytes * (ranksD - 1) / ranksD;
    double exchange = latency + linkBytes / (bandwidth * 1e3);
    double countExchange = latency;
    double touched = std::min<double>(localExperts, rows);
    double flops = 2.0 * rows * expertValues;
    double bytes = touched * expertValues * weightBits / 8.0 +
                   2.0 * rows * rowBytes;
    double expertTime = std::max(flops / (peakFlops * 1e3),
                                 bytes / (memoryBandwidth * 1e3));
    Prediction p;
    p.chunks = numChunks;
    p.dispatch = countExchange + exchange;
    p.expert = expertTime;
    p.ret = exchange;
    double slowest = std::max(p.expert, p.dispatch + p.ret);
    p.total = p.dispatch + p.expert + p.ret + (numChunks - 1) * slowest +
              (numChunks - 1) * chunkOverhead;
    return p;
  }

  void recordModel(ExchangeChain &chain,
                   ArrayRef<Prediction> predictions, int64_t chosen,
                   int64_t tokenCount) {
    MLIRContext *ctx = &getContext();
    auto f64 = [&](double v) { return FloatAttr::get(Float64Type::get(ctx), v); };
    const Prediction &serial = predictions.front();
    const Prediction *picked = nullptr;
    for (const Prediction &p : predictions)
      if (p.chunks == chosen)
        picked = &p;
    NamedAttrList model;
    model.append("chunks", IntegerAttr::get(IntegerType::get(ctx, 64), chosen));
    model.append("tokens",
                 IntegerAttr::get(IntegerType::get(ctx, 64), tokenCount));
    model.append("serial_us", f64(serial.total));
    if (picked)
      model.append("predicted_us", f64(picked->total));
    model.append("communication_share",
                 f64((serial.dispatch + serial.ret) / serial.total));
    getOperation()->setAttr("moe.overlap", DictionaryAttr::get(ctx, model));
    if (!report)
      return;
    std::string table;
    llvm::raw_string_ostream os(table);
    os << "expert-parallel overlap model (" << chain.ranks << " ranks, "
       << tokenCount << " tokens per rank):\n"
       << "chunks  dispatch_us  expert_us  return_us  total_us  gain\n";
    for (const Prediction &p : predictions)
      os << llvm::formatv("{0,6}  {1,11:F1}  {2,9:F1}  {3,9:F1}  {4,8:F1}  "
                          "{5,4:F2}x\n",
                          p.chunks, p.dispatch, p.expert, p.ret, p.total,
                          serial.total / p.total);
    os << "chosen: " << chosen;
    chain.combine.emitRemark() << table;
  }

  /// Replaces the chain by `numChunks` copies over token chunks, emitted
  /// in pipelined order.
  void pipeline(ExchangeChain &chain, int64_t numChunks) {
    CombineOp combine = chain.combine;
    OpBuilder builder(combine);
    Location loc = combine.getLoc();
    Value logits = chain.route.getLogits();
    Value tokenCount = tensor::DimOp::create(builder, loc, logits, 0);
    SmallVector<Value> bounds;
    for (int64_t i = 0; i <= numChunks; ++i) {
      Value scaled = arith::MulIOp::create(
          builder, loc, tokenCount,
          arith::ConstantIndexOp::create(builder, loc, i));
      bounds.push_back(arith::DivUIOp::create(
          builder, loc, scaled,
          arith::ConstantIndexOp::create(builder, loc, numChunks)));
    }

    // Token-indexed inputs of the chain, each sliced per chunk.
    SetVector<Value> tokenInputs;
    tokenInputs.insert(logits);
    tokenInputs.insert(chain.dispatch.getInput());
    if (Value input = combine.getInput())
      tokenInputs.insert(input);
    if (Value shared = combine.getShared())
      tokenInputs.insert(shared);
    SmallVector<IRMapping> maps(numChunks);
    for (int64_t i = 0; i < numChunks; ++i) {
      Value size =
          arith::SubIOp::create(builder, loc, bounds[i + 1], bounds[i]);
      for (Value input : tokenInputs) {
        auto type = cast<RankedTensorType>(input.getType());
        SmallVector<OpFoldResult> offsets(type.getRank(),
                                          builder.getIndexAttr(0));
        SmallVector<OpFoldResult> sizes =
            tensor::getMixedSizes(builder, loc, input);
        SmallVector<OpFoldResult> strides(type.getRank(),
                                          builder.getIndexAttr(1));
        offsets[0] = bounds[i];
        sizes[0] = size;
        SmallVector<int64_t> shape(type.getShape());
        shape[0] = ShapedType::kDynamic;
        maps[i].map(input, tensor::ExtractSliceOp::create(
                               builder, loc, type.clone(shape), input,
                               offsets, sizes, strides));
      }
    }

    auto resultType = cast<RankedTensorType>(combine.getType());
    Value result = tensor::EmptyOp::create(
        builder, loc, resultType.getShape(), resultType.getElementType(),
        resultType.isDynamicDim(0) ? ValueRange{tokenCount} : ValueRange{});
    for (int64_t step = 0; step < numChunks + kNumStages - 1; ++step) {
      for (int64_t stage = 0; stage < kNumStages; ++stage) {
        int64_t chunk = step - stage;
        if (chunk < 0 || chunk >= numChunks)
          continue;
        for (Operation *op : chain.ops)
          if (chain.stage.lookup(op) == stage)
            builder.clone(*op, maps[chunk]);
        if (stage != kNumStages - 1)
          continue;
        Value part = maps[chunk].lookup(combine.getResult());
        SmallVector<OpFoldResult> offsets(2, builder.getIndexAttr(0));
        offsets[0] = bounds[chunk];
        SmallVector<OpFoldResult> sizes =
            tensor::getMixedSizes(builder, loc, part);
        SmallVector<OpFoldResult> strides(2, builder.getIndexAttr(1));
        result = tensor::InsertSliceOp::create(builder, loc, part, result,
                                               offsets, sizes, strides);
      }
    }
    combine.getResult().replaceAllUsesWith(result);
    for (Operation *op : llvm::reverse(chain.ops))
      op->erase();
  }
};

} // namespace
