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
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <tuple>

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
  /// Whether rows travel one per token and expert (-moe-decompose-layer's
  /// ep-dispatch=expert: the layer's dispatch is by the route's ids), which
  /// expert-range chunks need; one per token and rank can only be split by
  /// tokens.
  bool rowPerExpert = false;
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
  chain.rowPerExpert = chain.dispatch.getIds() == chain.route.getIds();

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
  int64_t chunks = 1;
  bool byExperts = true;
  double dispatch = 0, expert = 0, ret = 0, total = 0;
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
                               chain->route.getInput().getType())
                               .getDimSize(0);
      if (ShapedType::isDynamic(tokenCount))
        tokenCount = tokens;
      if (split != "auto" && split != "experts" && split != "tokens") {
        getOperation().emitError() << "-moe-overlap-communication: split "
                                      "must be 'auto', 'experts' or "
                                      "'tokens', got '"
                                   << split << "'";
        return signalPassFailure();
      }
      // Candidates: no split, then expert chunks (at least one expert
      // each) and token chunks, as `split` allows.
      int64_t limit = std::max<int64_t>(maxChunks, 1);
      int64_t expertLimit =
          chain->rowPerExpert ? std::min(limit, localExpertCount(*chain)) : 1;
      if (split == "experts" && !chain->rowPerExpert) {
        chain->combine.emitError()
            << "-moe-overlap-communication: split=experts needs a row per "
               "token and expert (-moe-decompose-layer ep-dispatch=expert); "
               "this layer sends a row per token and rank";
        return signalPassFailure();
      }
      SmallVector<Prediction> predictions{
          predict(*chain, tokenCount, 1, /*byExperts=*/true)};
      if (split != "tokens")
        for (int64_t c = 2; c <= expertLimit; ++c)
          predictions.push_back(predict(*chain, tokenCount, c, true));
      if (split != "experts")
        for (int64_t c = 2; c <= limit; ++c)
          predictions.push_back(predict(*chain, tokenCount, c, false));

      Prediction chosen = predictions.front();
      if (chunks > 0) {
        // A given count: by experts where every chunk gets an expert.
        bool byExperts = split == "experts" ||
                         (split == "auto" && chunks <= expertLimit);
        int64_t count = byExperts ? std::min<int64_t>(chunks, expertLimit)
                                  : static_cast<int64_t>(chunks);
        chosen = predict(*chain, tokenCount, count, byExperts);
      } else {
        const Prediction &best =
            *llvm::min_element(predictions, [](const Prediction &a,
                                               const Prediction &b) {
              return a.total < b.total;
            });
        // Chunking has costs the model leaves out (smaller GEMMs, more
        // passes over the activations); only a clear predicted gain pays.
        if (best.total <= predictions.front().total * (1.0 - minGain))
          chosen = best;
      }
      recordModel(*chain, predictions, chosen, tokenCount);
      if (chosen.chunks <= 1)
        continue;
      if (chosen.byExperts) {
        if (failed(pipelineExperts(*chain, chosen.chunks)))
          return signalPassFailure();
      } else {
        pipeline(*chain, chosen.chunks);
      }
    }
  }

private:
  static int64_t localExpertCount(ExchangeChain &chain) {
    return cast<RankedTensorType>(chain.expert.getFc1().getType())
        .getDimSize(0);
  }

  Prediction predict(ExchangeChain &chain, int64_t tokenCount,
                     int64_t numChunks, bool byExperts) {
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

    // Balanced routing: a rank receives as many rows as it sends, of which
    // (P - 1) / P cross the link: T * k, or with a row per token and rank
    // the ranks a token's k uniformly chosen experts fall on,
    // P (1 - (1 - 1/P)^k) on average.
    double ranksD = static_cast<double>(chain.ranks);
    double rowsPerToken =
        chain.rowPerExpert ? static_cast<double>(k)
                           : ranksD * (1.0 - std::pow(1.0 - 1.0 / ranksD, k));
    double rows = static_cast<double>(tokenCount) * k / numChunks;
    double sentRows =
        static_cast<double>(tokenCount) * rowsPerToken / numChunks;
    double linkBytes = sentRows * rowBytes * (ranksD - 1) / ranksD;
    double exchange = latency + linkBytes / (bandwidth * 1e3);
    // The count exchange; with a row per token and rank, the rows' ids and
    // weights travel in an exchange of their own, beside the rows.
    double countExchange = chain.rowPerExpert ? latency : 2.0 * latency;
    // Token chunks each reread the weights of every expert they touch;
    // expert chunks read each expert's weights once, in their own chunk.
    double touched = byExperts
                         ? std::ceil(static_cast<double>(localExperts) /
                                     numChunks)
                         : std::min<double>(localExperts, rows);
    double flops = 2.0 * rows * expertValues;
    double bytes = touched * expertValues * weightBits / 8.0 +
                   2.0 * rows * rowBytes;
    double expertTime = std::max(flops / (peakFlops * 1e3),
                                 bytes / (memoryBandwidth * 1e3));
    Prediction p;
    p.chunks = numChunks;
    p.byExperts = byExperts;
    p.dispatch = countExchange + exchange;
    p.expert = expertTime;
    p.ret = exchange;
    double slowest = std::max(p.expert, p.dispatch + p.ret);
    p.total = p.dispatch + p.expert + p.ret + (numChunks - 1) * slowest +
              (numChunks - 1) * chunkOverhead;
    return p;
  }

  void recordModel(ExchangeChain &chain, ArrayRef<Prediction> predictions,
                   const Prediction &chosen, int64_t tokenCount) {
    MLIRContext *ctx = &getContext();
    auto f64 = [&](double v) {
      return FloatAttr::get(Float64Type::get(ctx), v);
    };
    auto splitName = [](const Prediction &p) {
      return p.chunks == 1 ? "none" : p.byExperts ? "experts" : "tokens";
    };
    const Prediction &serial = predictions.front();
    NamedAttrList model;
    model.append("chunks",
                 IntegerAttr::get(IntegerType::get(ctx, 64), chosen.chunks));
    model.append("split", StringAttr::get(ctx, splitName(chosen)));
    model.append("tokens",
                 IntegerAttr::get(IntegerType::get(ctx, 64), tokenCount));
    model.append("serial_us", f64(serial.total));
    model.append("predicted_us", f64(chosen.total));
    model.append("communication_share",
                 f64((serial.dispatch + serial.ret) / serial.total));
    getOperation()->setAttr("moe.overlap", DictionaryAttr::get(ctx, model));
    if (!report)
      return;
    std::string table;
    llvm::raw_string_ostream os(table);
    os << "expert-parallel overlap model (" << chain.ranks << " ranks, "
       << tokenCount << " tokens per rank):\n"
       << "split    chunks  dispatch_us  expert_us  return_us  total_us  "
          "gain\n";
    for (const Prediction &p : predictions)
      os << llvm::formatv("{0,-7}  {1,6}  {2,11:F1}  {3,9:F1}  {4,9:F1}  "
                          "{5,8:F1}  {6,4:F2}x\n",
                          splitName(p), p.chunks, p.dispatch, p.expert, p.ret,
                          p.total, serial.total / p.total);
    os << "chosen: " << splitName(chosen) << ", " << chosen.chunks
       << (chosen.chunks == 1 ? " chunk" : " chunks");
    chain.combine.emitRemark() << table;
  }

  /// Replaces the row and result exchanges of the chain and the experts
  /// between them by `numChunks` copies over disjoint ranges of every
  /// rank's local experts, emitted in pipelined order. The count exchange
  /// and the routing stay whole. A chunk's rows for rank `p` are the
  /// dispatched rows of p's experts in the range: contiguous per rank, so
  /// they are packed into one send tensor, and its returned rows are
  /// unpacked to the same places of a dispatch-order tensor that the
  /// layer's combine reads.
  LogicalResult pipelineExperts(ExchangeChain &chain, int64_t numChunks) {
    DispatchOp dispatch = chain.dispatch;
    CombineOp combine = chain.combine;
    Value rows = dispatch.getRows();
    Value offsets = dispatch.getOffsets();
    auto rowsType = cast<RankedTensorType>(rows.getType());
    int64_t ranks = chain.ranks;
    int64_t numExperts = dispatch.getNumExperts();
    int64_t perRank = localExpertCount(chain);

    // The count exchange: the first wait of the chain, per-expert i32 counts.
    AllToAllWaitOp countsWait;
    AllToAllStartOp rowsStart;
    for (Operation *op : chain.ops) {
      if (auto wait = dyn_cast<AllToAllWaitOp>(op); wait && !countsWait)
        countsWait = wait;
      if (auto start = dyn_cast<AllToAllStartOp>(op);
          start && start.getSend() == rows)
        rowsStart = start;
    }
    auto returnWait = combine.getExpertOutput().getDefiningOp<AllToAllWaitOp>();
    if (!countsWait || !rowsStart || !returnWait ||
        cast<RankedTensorType>(countsWait.getType()).getDimSize(0) !=
            ranks * perRank)
      return combine.emitOpError(
          "is not the combine of an expert exchange built by "
          "-moe-decompose-layer; cannot split it by experts");
    Value receivedCounts = countsWait.getResult();
    FlatSymbolRefAttr grid = rowsStart.getGridAttr();
    Type scoreType = getElementTypeOrSelf(combine.getWeights().getType());

    OpBuilder b(combine);
    Location loc = combine.getLoc();
    Type i32 = b.getI32Type();
    auto index = [&](int64_t v) -> Value {
      return arith::ConstantIndexOp::create(b, loc, v);
    };
    auto toIndex = [&](Value v) -> Value {
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
    };
    auto countsType = RankedTensorType::get({ranks}, i32);
    auto firstExpert = [&](int64_t rank) {
      return rank * (numExperts / ranks) + std::min(rank, numExperts % ranks);
    };
    auto rowSlice = [&](Value source, Value offset, Value size) {
      SmallVector<OpFoldResult> offs(rowsType.getRank(), b.getIndexAttr(0));
      SmallVector<OpFoldResult> sizes =
          tensor::getMixedSizes(b, loc, source);
      SmallVector<OpFoldResult> strides(rowsType.getRank(),
                                        b.getIndexAttr(1));
      offs[0] = offset;
      sizes[0] = size;
      return std::make_tuple(offs, sizes, strides);
    };
    auto extractRows = [&](Value source, Value offset, Value size) -> Value {
      auto [offs, sizes, strides] = rowSlice(source, offset, size);
      return tensor::ExtractSliceOp::create(b, loc, rowsType, source, offs,
                                            sizes, strides);
    };
    auto insertRows = [&](Value part, Value dest, Value offset) -> Value {
      auto [offs, sizes, strides] =
          rowSlice(part, offset, tensor::DimOp::create(b, loc, part, 0));
      return tensor::InsertSliceOp::create(b, loc, part, dest, offs, sizes,
                                           strides);
    };
    SmallVector<Value> expertOffsets;
    for (int64_t e = 0; e <= numExperts; ++e)
      expertOffsets.push_back(
          tensor::ExtractOp::create(b, loc, offsets, ValueRange{index(e)}));

    struct Chunk {
      int64_t first, last; // local experts [first, last)
      SmallVector<Value> sendOffsets, sendCounts;
      Value sendCountsTensor, recvCountsTensor, numReceived;
      AllToAllStartOp rowsStart, resultsStart;
    };
    SmallVector<Chunk> chunks(numChunks);
    Value dispatchOrder = tensor::EmptyOp::create(
        b, loc, rowsType.getShape(), rowsType.getElementType(),
        ValueRange{tensor::DimOp::create(b, loc, rows, 0)});

    // Stage 0: pack the chunk's rows and start sending them.
    auto sendRows = [&](Chunk &chunk) {
      SmallVector<Value> recvCounts;
      Value numSent = index(0);
      chunk.numReceived = index(0);
      for (int64_t p = 0; p < ranks; ++p) {
        int64_t owned = firstExpert(p + 1) - firstExpert(p);
        int64_t from = firstExpert(p) + std::min(chunk.first, owned);
        int64_t to = firstExpert(p) + std::min(chunk.last, owned);
        chunk.sendOffsets.push_back(expertOffsets[from]);
        Value count = arith::SubIOp::create(b, loc, expertOffsets[to],
                                            expertOffsets[from]);
        chunk.sendCounts.push_back(count);
        numSent = arith::AddIOp::create(b, loc, numSent, toIndex(count));
        Value received = arith::ConstantIntOp::create(b, loc, i32, 0);
        for (int64_t j = chunk.first; j < chunk.last; ++j)
          received = arith::AddIOp::create(
              b, loc, received,
              tensor::ExtractOp::create(b, loc, receivedCounts,
                                        ValueRange{index(p * perRank + j)}));
        recvCounts.push_back(received);
        chunk.numReceived =
            arith::AddIOp::create(b, loc, chunk.numReceived, toIndex(received));
      }
      Value packed = tensor::EmptyOp::create(b, loc, rowsType.getShape(),
                                             rowsType.getElementType(),
                                             ValueRange{numSent});
      Value at = index(0);
      for (int64_t p = 0; p < ranks; ++p) {
        Value count = toIndex(chunk.sendCounts[p]);
        packed = insertRows(
            extractRows(rows, toIndex(chunk.sendOffsets[p]), count), packed,
            at);
        at = arith::AddIOp::create(b, loc, at, count);
      }
      chunk.sendCountsTensor =
          tensor::FromElementsOp::create(b, loc, countsType, chunk.sendCounts);
      chunk.recvCountsTensor =
          tensor::FromElementsOp::create(b, loc, countsType, recvCounts);
      chunk.rowsStart = AllToAllStartOp::create(
          b, loc, packed, chunk.sendCountsTensor, chunk.recvCountsTensor,
          tensor::EmptyOp::create(b, loc, rowsType.getShape(),
                                  rowsType.getElementType(),
                                  ValueRange{chunk.numReceived}),
          grid);
    };

    // Stage 1: the chunk's experts on the rows received, results sent back.
    auto compute = [&](Chunk &chunk) {
      Value received = AllToAllWaitOp::create(
          b, loc, chunk.rowsStart.getRequest(), chunk.rowsStart.getPending(),
          chunk.rowsStart.getSend());
      int64_t width = chunk.last - chunk.first;
      auto idsType = RankedTensorType::get({ShapedType::kDynamic, 1}, i32);
      Value ids = tensor::EmptyOp::create(b, loc, idsType.getShape(), i32,
                                          ValueRange{chunk.numReceived});
      // Rows arrive by source rank, then by local expert of the range.
      auto fill = scf::ForOp::create(
          b, loc, index(0), index(ranks * width), index(1),
          ValueRange{ids, index(0)},
          [&](OpBuilder &nb, Location nl, Value i, ValueRange iter) {
            Value w = arith::ConstantIndexOp::create(nb, nl, width);
            Value source = arith::DivUIOp::create(nb, nl, i, w);
            Value expert = arith::AddIOp::create(
                nb, nl, arith::RemUIOp::create(nb, nl, i, w),
                arith::ConstantIndexOp::create(nb, nl, chunk.first));
            Value flat = arith::AddIOp::create(
                nb, nl,
                arith::MulIOp::create(
                    nb, nl, source,
                    arith::ConstantIndexOp::create(nb, nl, perRank)),
                expert);
            Value count = arith::IndexCastOp::create(
                nb, nl, nb.getIndexType(),
                tensor::ExtractOp::create(nb, nl, receivedCounts, flat));
            SmallVector<OpFoldResult> offs = {iter[1], nb.getIndexAttr(0)};
            SmallVector<OpFoldResult> sizes = {count, nb.getIndexAttr(1)};
            SmallVector<OpFoldResult> strides(2, nb.getIndexAttr(1));
            Value slice = tensor::ExtractSliceOp::create(nb, nl, iter[0], offs,
                                                         sizes, strides);
            Value filled =
                linalg::FillOp::create(
                    nb, nl,
                    ValueRange{arith::IndexCastOp::create(nb, nl, i32,
                                                          expert)},
                    ValueRange{slice})
                    .getResult(0);
            Value updated = tensor::InsertSliceOp::create(
                nb, nl, filled, iter[0], offs, sizes, strides);
            scf::YieldOp::create(
                nb, nl,
                ValueRange{updated,
                           arith::AddIOp::create(nb, nl, iter[1], count)});
          });
      Value localIds = fill.getResult(0);
      auto local = DispatchOp::create(
          b, loc, rowsType, RankedTensorType::get({perRank + 1}, i32),
          RankedTensorType::get({ShapedType::kDynamic}, i32), idsType,
          received, localIds, /*group_size=*/Value(),
          b.getI64IntegerAttr(perRank), /*capacity_factor=*/FloatAttr(),
          /*expert_capacity=*/IntegerAttr());
      IRMapping map;
      map.map(chain.expert.getRows(), local.getRows());
      map.map(chain.expert.getOffsets(), local.getOffsets());
      Value expertOutput = b.clone(*chain.expert, map)->getResult(0);
      Value unitWeights =
          linalg::FillOp::create(
              b, loc,
              ValueRange{arith::ConstantOp::create(
                  b, loc, b.getFloatAttr(scoreType, 1.0))},
              ValueRange{tensor::EmptyOp::create(
                  b, loc, ArrayRef<int64_t>{ShapedType::kDynamic, 1},
                  scoreType, ValueRange{chunk.numReceived})})
              .getResult(0);
      Value arrivalOrder = CombineOp::create(
          b, loc, rowsType, expertOutput, unitWeights, localIds,
          local.getSlotRows(), Value(), Value(), Value(), Value(), Value(),
          b.getI64IntegerAttr(perRank), ArrayAttr(),
          /*dropped_pass_through=*/UnitAttr());
      Value numReturned = index(0);
      for (Value count : chunk.sendCounts)
        numReturned = arith::AddIOp::create(b, loc, numReturned,
                                            toIndex(count));
      chunk.resultsStart = AllToAllStartOp::create(
          b, loc, arrivalOrder, chunk.recvCountsTensor,
          chunk.sendCountsTensor,
          tensor::EmptyOp::create(b, loc, rowsType.getShape(),
                                  rowsType.getElementType(),
                                  ValueRange{numReturned}),
          grid);
    };

    // Stage 2: the results back in dispatch order.
    auto unpack = [&](Chunk &chunk) {
      Value returned = AllToAllWaitOp::create(
          b, loc, chunk.resultsStart.getRequest(),
          chunk.resultsStart.getPending(), chunk.resultsStart.getSend());
      Value at = index(0);
      for (int64_t p = 0; p < ranks; ++p) {
        Value count = toIndex(chunk.sendCounts[p]);
        dispatchOrder =
            insertRows(extractRows(returned, at, count), dispatchOrder,
                       toIndex(chunk.sendOffsets[p]));
        at = arith::AddIOp::create(b, loc, at, count);
      }
    };

    for (int64_t c = 0; c < numChunks; ++c) {
      chunks[c].first = c * perRank / numChunks;
      chunks[c].last = (c + 1) * perRank / numChunks;
    }
    constexpr int64_t kExpertStages = 3;
    for (int64_t step = 0; step < numChunks + kExpertStages - 1; ++step) {
      if (step < numChunks)
        sendRows(chunks[step]);
      if (step >= 1 && step - 1 < numChunks)
        compute(chunks[step - 1]);
      if (step >= 2 && step - 2 < numChunks)
        unpack(chunks[step - 2]);
    }
    combine.getExpertOutputMutable().assign(dispatchOrder);

    // The whole-range exchange is dead now; its starts and waits are not
    // pure, so they go explicitly.
    DenseSet<Operation *> kept{combine.getOperation()};
    for (Operation *op : llvm::reverse(chain.ops)) {
      if (kept.contains(op))
        continue;
      if (llvm::all_of(op->getResults(),
                       [](Value v) { return v.use_empty(); }))
        op->erase();
    }
    return success();
  }

  /// Replaces the chain by `numChunks` copies over token chunks, emitted
  /// in pipelined order.
  void pipeline(ExchangeChain &chain, int64_t numChunks) {
    CombineOp combine = chain.combine;
    OpBuilder builder(combine);
    Location loc = combine.getLoc();
    // The route's input (logits, or tokens with the router fused) has a
    // row per token.
    Value routeInput = chain.route.getInput();
    Value tokenCount = tensor::DimOp::create(builder, loc, routeInput, 0);
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
    tokenInputs.insert(routeInput);
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
