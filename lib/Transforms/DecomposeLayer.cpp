//===- DecomposeLayer.cpp - moe.layer into its four stages ------------------===//
//
// moe.layer is convenient to import and to read, but every optimisation
// works on one stage at a time: routing fusion, gather-fused grouped GEMMs,
// the combine epilogue. This pass exposes the stages.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "moe-mlir/Transforms/ElementConversion.h"

#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSELAYER
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Multiplies two static sizes, staying dynamic if either is.
int64_t mulSizes(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b)
             ? ShapedType::kDynamic
             : a * b;
}

/// A `sizes` tensor of `elementType` filled with `value`.
Value filledTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, double value) {
  Value init = tensor::EmptyOp::create(b, loc, sizes, elementType);
  Value fill = arith::ConstantOp::create(b, loc, elementType,
                                         b.getFloatAttr(elementType, value));
  return linalg::FillOp::create(b, loc, fill, init).getResult(0);
}

/// Half-precision (f16, bf16) activations and logits are widened to f32 for
/// the stages: the arithmetic is f32 anyway, and rounding the routing
/// weights and every expert's output to half precision on the way would
/// triple the rounding error of the layer (ONNX Runtime rounds once, at
/// the output, too).
Value widenHalf(PatternRewriter &rewriter, Location loc, Value value) {
  Type elementType = getElementTypeOrSelf(value.getType());
  if (elementType.getIntOrFloatBitWidth() >= 32)
    return value;
  return convertElements(rewriter, loc, value, rewriter.getF32Type());
}

/// The router's logits `tokens . routerWeight^T` (`[T, H] x [E, H] -> [T, E]`)
/// as the transposed-B contraction the importer builds for a MatMul by a
/// weight, which -moe-fuse-router matches.
Value buildRouterLogits(PatternRewriter &rewriter, Location loc, Value tokens,
                        Value routerWeight) {
  auto tokensType = cast<RankedTensorType>(tokens.getType());
  Type elementType = tokensType.getElementType();
  int64_t numExperts =
      cast<RankedTensorType>(routerWeight.getType()).getDimSize(0);
  SmallVector<OpFoldResult> sizes = {
      tensor::getMixedSize(rewriter, loc, tokens, 0),
      rewriter.getIndexAttr(numExperts)};
  Value init = filledTensor(rewriter, loc, sizes, elementType, 0.0);
  MLIRContext *ctx = rewriter.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> maps =
      AffineMap::inferFromExprList(
          ArrayRef<ArrayRef<AffineExpr>>{{m, k}, {n, k}, {m, n}}, ctx);
  SmallVector<utils::IteratorType> iterators = {
      utils::IteratorType::parallel, utils::IteratorType::parallel,
      utils::IteratorType::reduction};
  return linalg::GenericOp::create(
             rewriter, loc, init.getType(), ValueRange{tokens, routerWeight},
             ValueRange{init}, maps, iterators,
             [&](OpBuilder &b, Location nested, ValueRange args) {
               Value product =
                   arith::MulFOp::create(b, nested, args[0], args[1]);
               Value sum = arith::AddFOp::create(b, nested, args[2], product);
               linalg::YieldOp::create(b, nested, sum);
             })
      .getResult(0);
}

/// Runs every shared expert on all tokens and sums their outputs. Each
/// shared expert is a one-expert moe.expert whose single expert owns rows
/// [0, T), so shared experts reuse the grouped-FFN lowering unchanged.
/// Shared experts are never quantised (only the routed ones are). They read
/// `tokens` (bf16 rows for bf16 weights with bf16-rows) and give
/// `tokensType`.
Value buildSharedExperts(PatternRewriter &rewriter, LayerOp layer, Value tokens,
                         RankedTensorType tokensType) {
  Location loc = layer.getLoc();
  auto i32 = rewriter.getI32Type();

  Value zero = arith::ConstantIntOp::create(rewriter, loc, i32, 0);
  Value numTokens = tensor::DimOp::create(rewriter, loc, tokens, 0);
  Value numTokensI32 =
      arith::IndexCastOp::create(rewriter, loc, i32, numTokens);
  Value offsets = tensor::FromElementsOp::create(
      rewriter, loc, RankedTensorType::get({2}, i32),
      ValueRange{zero, numTokensI32});

  // Takes shared expert `index` of a stacked [S, ...] weight as [1, ...].
  auto sliceExpert = [&](Value stacked, int64_t index) -> Value {
    if (!stacked)
      return {};
    auto type = cast<RankedTensorType>(stacked.getType());
    if (type.getDimSize(0) == 1)
      return stacked;
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = 1;
    SmallVector<OpFoldResult> offsets(type.getRank(), rewriter.getIndexAttr(0));
    offsets[0] = rewriter.getIndexAttr(index);
    SmallVector<OpFoldResult> sizes = llvm::map_to_vector(
        shape, [&](int64_t d) -> OpFoldResult { return rewriter.getIndexAttr(d); });
    SmallVector<OpFoldResult> strides(type.getRank(), rewriter.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(
        rewriter, loc, RankedTensorType::get(shape, type.getElementType()),
        stacked, offsets, sizes, strides);
  };

  int64_t numShared =
      cast<RankedTensorType>(layer.getSharedFc1().getType()).getDimSize(0);
  Value sum;
  for (int64_t s = 0; s < numShared; ++s) {
    // Sliced one after another: argument evaluation order is unspecified
    // and the emitted IR must not depend on the compiler.
    Value fc1 = sliceExpert(layer.getSharedFc1(), s);
    Value fc2 = sliceExpert(layer.getSharedFc2(), s);
    Value fc3 = sliceExpert(layer.getSharedFc3(), s);
    Value out = ExpertOp::create(
        rewriter, loc, tokensType, tokens, offsets, /*gather_tokens=*/Value(),
        fc1, Value(), fc2, Value(), fc3, Value(), /*fc1_scales=*/Value(),
        /*fc2_scales=*/Value(), /*fc3_scales=*/Value(), /*fc1_zero_points=*/Value(),
        /*fc2_zero_points=*/Value(), /*fc3_zero_points=*/Value(),
        /*combine_into=*/Value(), /*row_tokens=*/Value(),
        /*row_weights=*/Value(),
        layer.getActivationAttr(), layer.getSwigluFusionAttr(),
        layer.getAlphaAttr(), layer.getBetaAttr(), layer.getLimitAttr(),
        /*quant=*/QuantAttr(), /*panel_width=*/IntegerAttr());
    if (!sum) {
      sum = out;
      continue;
    }
    // linalg.add rather than arith.addf on tensors: it bufferizes.
    Value init = tensor::EmptyOp::create(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, out),
        tokensType.getElementType());
    sum = linalg::AddOp::create(rewriter, loc, ValueRange{sum, out},
                                ValueRange{init})
              .getResult(0);
  }
  return sum;
}

/// The layer's routed experts (its weights, biases, quantisation and
/// activation) on `rows` grouped by `offsets`.
Value buildRoutedExperts(PatternRewriter &rewriter, Location loc, LayerOp layer,
                         Type resultType, Value rows, Value offsets) {
  return ExpertOp::create(
      rewriter, loc, resultType, rows, offsets, /*gather_tokens=*/Value(),
      layer.getFc1(), layer.getFc1Bias(), layer.getFc2(), layer.getFc2Bias(),
      layer.getFc3(), layer.getFc3Bias(), layer.getFc1Scales(),
      layer.getFc2Scales(), layer.getFc3Scales(), layer.getFc1ZeroPoints(),
      layer.getFc2ZeroPoints(), layer.getFc3ZeroPoints(),
      /*combine_into=*/Value(), /*row_tokens=*/Value(),
      /*row_weights=*/Value(), layer.getActivationAttr(),
      layer.getSwigluFusionAttr(), layer.getAlphaAttr(), layer.getBetaAttr(),
      layer.getLimitAttr(), layer.getQuantAttr(),
      /*panel_width=*/IntegerAttr());
}

/// Starts an all-to-all-v of `send`'s rows on `grid` into `dest`.
AllToAllStartOp startExchange(PatternRewriter &rewriter, Location loc,
                              FlatSymbolRefAttr grid, Value send,
                              Value sendCounts, Value recvCounts, Value dest) {
  return AllToAllStartOp::create(rewriter, loc, send, sendCounts, recvCounts,
                                 dest, grid);
}

/// Waits for `start`'s exchange: the received rows.
Value waitExchange(PatternRewriter &rewriter, Location loc,
                   AllToAllStartOp start) {
  return AllToAllWaitOp::create(rewriter, loc, start.getRequest(),
                                start.getPending(), start.getSend());
}

/// A rank's own experts on the rows it received: a local moe.dispatch by
/// `localIds` ([rows, k'], ids in [0, perRank), -1 for none), the layer's
/// experts, and a moe.combine by `weights` back to one row per received
/// row.
Value buildLocalExperts(PatternRewriter &rewriter, Location loc, LayerOp layer,
                        Value received, Value localIds, Value weights,
                        int64_t perRank) {
  auto i32 = rewriter.getI32Type();
  Type rowsType = received.getType();
  auto local = DispatchOp::create(
      rewriter, loc, rowsType, RankedTensorType::get({perRank + 1}, i32),
      RankedTensorType::get({ShapedType::kDynamic}, i32), localIds.getType(),
      received, localIds, /*group_size=*/Value(),
      rewriter.getI64IntegerAttr(perRank), /*capacity_factor=*/FloatAttr(),
      /*expert_capacity=*/IntegerAttr());
  Value expert = buildRoutedExperts(rewriter, loc, layer, rowsType,
                                    local.getRows(), local.getOffsets());
  return CombineOp::create(rewriter, loc, rowsType, expert, weights, localIds,
                           local.getSlotRows(), Value(), Value(), Value(),
                           Value(), Value(),
                           rewriter.getI64IntegerAttr(perRank), ArrayAttr(),
                           /*dropped_pass_through=*/UnitAttr());
}

/// `value` with a dynamic leading dimension: the stages of an
/// expert-parallel layer see any number of tokens per rank (and per chunk,
/// once -moe-overlap-communication has split them).
Value withDynamicRows(PatternRewriter &rewriter, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.isDynamicDim(0))
    return value;
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = ShapedType::kDynamic;
  return tensor::CastOp::create(rewriter, loc, type.clone(shape), value);
}

/// The routed experts of an expert-parallel layer: the dispatched rows
/// travel to the ranks owning their experts, are grouped there by local
/// expert, run through the rank's experts, and come back in dispatch order,
/// so that moe.combine sees what moe.expert would have produced.
///
///   1. per-expert row counts: all-to-all, ceil(E/P) counts per rank pair;
///   2. rows: all-to-all-v, rank p receiving the rows of its experts;
///   3. local dispatch by local expert, moe.expert, and a unit-weight
///      moe.combine back to arrival order;
///   4. results: all-to-all-v back, the reverse of 2.
Value buildExpertExchange(PatternRewriter &rewriter, LayerOp layer,
                          DispatchOp dispatch, Type scoreType) {
  Location loc = layer.getLoc();
  ExpertParallelAttr ep = layer.getExpertParallelAttr();
  FlatSymbolRefAttr grid = ep.getGrid();
  int64_t ranks = ep.getRanks(), perRank = ep.getExpertsPerRank();
  auto i32 = rewriter.getI32Type();
  auto index = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(rewriter, loc, v);
  };
  auto i32Const = [&](int64_t v) -> Value {
    return arith::ConstantIntOp::create(rewriter, loc, i32, v);
  };
  auto countsType = RankedTensorType::get({ranks}, i32);
  auto expertCountsType = RankedTensorType::get({ranks * perRank}, i32);

  // Rows per expert, from the dispatch offsets.
  SmallVector<Value> offsets;
  for (int64_t e = 0; e <= ep.getNumExperts(); ++e)
    offsets.push_back(tensor::ExtractOp::create(
        rewriter, loc, dispatch.getOffsets(), ValueRange{index(e)}));
  SmallVector<Value> expertCounts, sendRows;
  for (int64_t p = 0; p < ranks; ++p) {
    int64_t first = ep.getFirstExpert(p), last = ep.getFirstExpert(p + 1);
    for (int64_t j = 0; j < perRank; ++j)
      expertCounts.push_back(
          first + j < last
              ? arith::SubIOp::create(rewriter, loc, offsets[first + j + 1],
                                      offsets[first + j])
                    .getResult()
              : i32Const(0));
    sendRows.push_back(arith::SubIOp::create(rewriter, loc, offsets[last],
                                             offsets[first]));
  }

  auto exchange = [&](Value send, Value sendCounts, Value recvCounts,
                      Value dest) -> Value {
    return waitExchange(
        rewriter, loc,
        startExchange(rewriter, loc, grid, send, sendCounts, recvCounts, dest));
  };

  // 1. Counts: every rank pair exchanges ceil(E/P) counts.
  Value perRankCounts = tensor::FromElementsOp::create(
      rewriter, loc, countsType,
      SmallVector<Value>(ranks, i32Const(perRank)));
  Value sentExpertCounts = tensor::FromElementsOp::create(
      rewriter, loc, expertCountsType, expertCounts);
  Value receivedExpertCounts = exchange(
      sentExpertCounts, perRankCounts, perRankCounts,
      tensor::EmptyOp::create(rewriter, loc, expertCountsType.getShape(), i32));

  // 2. Rows.
  SmallVector<Value> recvRows;
  Value numReceived = index(0);
  for (int64_t p = 0; p < ranks; ++p) {
    Value rows = i32Const(0);
    for (int64_t j = 0; j < perRank; ++j)
      rows = arith::AddIOp::create(
          rewriter, loc, rows,
          tensor::ExtractOp::create(rewriter, loc, receivedExpertCounts,
                                    ValueRange{index(p * perRank + j)}));
    recvRows.push_back(rows);
    numReceived = arith::AddIOp::create(
        rewriter, loc, numReceived,
        arith::IndexCastOp::create(rewriter, loc, rewriter.getIndexType(),
                                   rows));
  }
  Value sendRowCounts =
      tensor::FromElementsOp::create(rewriter, loc, countsType, sendRows);
  Value recvRowCounts =
      tensor::FromElementsOp::create(rewriter, loc, countsType, recvRows);
  Value rows = dispatch.getRows();
  auto rowsType = cast<RankedTensorType>(rows.getType());
  Value received = exchange(
      rows, sendRowCounts, recvRowCounts,
      tensor::EmptyOp::create(rewriter, loc, rowsType.getShape(),
                              rowsType.getElementType(),
                              ValueRange{numReceived}));

  // 3. Local experts. Rows arrive grouped by source rank, then by local
  // expert; each row's local expert id follows from the counts.
  auto idsType = RankedTensorType::get({ShapedType::kDynamic, 1}, i32);
  Value ids = tensor::EmptyOp::create(rewriter, loc, idsType.getShape(), i32,
                                      ValueRange{numReceived});
  auto fillIds = scf::ForOp::create(
      rewriter, loc, index(0), index(ranks * perRank), index(1),
      ValueRange{ids, index(0)},
      [&](OpBuilder &b, Location nested, Value i, ValueRange iterArgs) {
        Value count = arith::IndexCastOp::create(
            b, nested, b.getIndexType(),
            tensor::ExtractOp::create(b, nested, receivedExpertCounts, i));
        Value expert = arith::IndexCastOp::create(
            b, nested, i32,
            arith::RemUIOp::create(
                b, nested, i,
                arith::ConstantIndexOp::create(b, nested, perRank)));
        Value slice = tensor::ExtractSliceOp::create(
            b, nested, iterArgs[0],
            ArrayRef<OpFoldResult>{iterArgs[1], b.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{count, b.getIndexAttr(1)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
        Value filled =
            linalg::FillOp::create(b, nested, ValueRange{expert},
                                   ValueRange{slice})
                .getResult(0);
        Value updated = tensor::InsertSliceOp::create(
            b, nested, filled, iterArgs[0],
            ArrayRef<OpFoldResult>{iterArgs[1], b.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{count, b.getIndexAttr(1)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
        Value next = arith::AddIOp::create(b, nested, iterArgs[1], count);
        scf::YieldOp::create(b, nested, ValueRange{updated, next});
      });
  Value localIds = fillIds.getResult(0);
  Value unitWeights = filledTensor(
      rewriter, loc, {numReceived, rewriter.getIndexAttr(1)}, scoreType, 1.0);
  Value arrivalOrder = buildLocalExperts(rewriter, loc, layer, received,
                                         localIds, unitWeights, perRank);

  // 4. Results back to the ranks the rows came from, in dispatch order.
  return exchange(arrivalOrder, recvRowCounts, sendRowCounts,
                  tensor::EmptyOp::create(
                      rewriter, loc, rowsType.getShape(),
                      rowsType.getElementType(),
                      ValueRange{tensor::DimOp::create(rewriter, loc, rows,
                                                       0)}));
}

/// What the layer's moe.combine reads of the routed experts: their rows,
/// the weight each slot's row is scaled by and each slot's row.
struct RoutedRows {
  Value expertOutput, weights, slotRows;
};

/// The destination rank of each slot of `ids` ([T, k]) under `ep`'s
/// partition rule (a constant table), or -1: for zero-computation experts,
/// empty slots, and slots whose rank an earlier slot of the token already
/// has (the token travels there once).
Value buildSlotRanks(PatternRewriter &rewriter, Location loc,
                     ExpertParallelAttr ep, Value ids) {
  int64_t ranks = ep.getRanks(), numExperts = ep.getNumExperts();
  auto idsType = cast<RankedTensorType>(ids.getType());
  int64_t k = idsType.getDimSize(1);
  auto i32 = rewriter.getI32Type();
  auto toIndex = [&](OpBuilder &b, Location l, Value v) -> Value {
    return arith::IndexCastOp::create(b, l, b.getIndexType(), v);
  };
  AffineMap identity = rewriter.getMultiDimIdentityMap(2);
  SmallVector<utils::IteratorType> parallel(2, utils::IteratorType::parallel);
  Value empty = tensor::EmptyOp::create(
      rewriter, loc, tensor::getMixedSizes(rewriter, loc, ids), i32);
  SmallVector<int32_t> rankOfExpert(numExperts);
  for (int64_t p = 0; p < ranks; ++p)
    for (int64_t e = ep.getFirstExpert(p); e < ep.getFirstExpert(p + 1); ++e)
      rankOfExpert[e] = p;
  Value rankTable = arith::ConstantOp::create(
      rewriter, loc,
      DenseIntElementsAttr::get(RankedTensorType::get({numExperts}, i32),
                                ArrayRef(rankOfExpert)));
  auto rankOf = [&](OpBuilder &b, Location l, Value expert) -> Value {
    auto c = [&](int64_t v) -> Value {
      return arith::ConstantIntOp::create(b, l, expert.getType(), v);
    };
    Value valid = arith::AndIOp::create(
        b, l,
        arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, expert, c(0)),
        arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, expert,
                              c(numExperts)));
    Value clamped = arith::SelectOp::create(b, l, valid, expert, c(0));
    Value rank = tensor::ExtractOp::create(b, l, rankTable,
                                           ValueRange{toIndex(b, l, clamped)});
    return arith::SelectOp::create(b, l, valid, rank,
                                   arith::ConstantIntOp::create(b, l, i32, -1));
  };
  return linalg::GenericOp::create(
             rewriter, loc,
             TypeRange{RankedTensorType::get(idsType.getShape(), i32)},
             ValueRange{ids}, ValueRange{empty},
             ArrayRef<AffineMap>{identity, identity}, parallel,
             [&](OpBuilder &b, Location l, ValueRange args) {
               Value token = linalg::IndexOp::create(b, l, 0);
               Value slot = linalg::IndexOp::create(b, l, 1);
               Value rank = rankOf(b, l, args[0]);
               Value taken =
                   arith::ConstantIntOp::create(b, l, b.getI1Type(), 0);
               for (int64_t earlier = 0; earlier + 1 < k; ++earlier) {
                 Value at = arith::ConstantIndexOp::create(b, l, earlier);
                 Value before = arith::CmpIOp::create(
                     b, l, arith::CmpIPredicate::ult, at, slot);
                 Value same = arith::CmpIOp::create(
                     b, l, arith::CmpIPredicate::eq, rank,
                     rankOf(b, l,
                            tensor::ExtractOp::create(b, l, ids,
                                                      ValueRange{token, at})));
                 taken = arith::OrIOp::create(
                     b, l, taken, arith::AndIOp::create(b, l, before, same));
               }
               linalg::YieldOp::create(
                   b, l,
                   ValueRange{arith::SelectOp::create(
                       b, l, taken, arith::ConstantIntOp::create(b, l, i32, -1),
                       rank)});
             })
      .getResult(0);
}

/// Each dispatched row's token's ids (columns [0, k)) and routing weights'
/// bits ([k, 2k)) as `metaType` integers, from `rowTokens` ([rows], the
/// token of each row); padding rows (token -1) read token 0 and are never
/// sent.
Value buildRowMetadata(PatternRewriter &rewriter, Location loc, Value rowTokens,
                       Value ids, Value weights, IntegerType metaType) {
  int64_t k = cast<RankedTensorType>(ids.getType()).getDimSize(1);
  auto i32 = rewriter.getI32Type();
  auto toIndex = [&](OpBuilder &b, Location l, Value v) -> Value {
    return arith::IndexCastOp::create(b, l, b.getIndexType(), v);
  };
  AffineMap identity = rewriter.getMultiDimIdentityMap(2);
  SmallVector<utils::IteratorType> parallel(2, utils::IteratorType::parallel);
  auto metaRowsType =
      RankedTensorType::get({ShapedType::kDynamic, 2 * k}, metaType);
  Value metaInit = tensor::EmptyOp::create(
      rewriter, loc, metaRowsType.getShape(), metaType,
      ValueRange{tensor::DimOp::create(rewriter, loc, rowTokens, 0)});
  return linalg::GenericOp::create(
             rewriter, loc, TypeRange{metaRowsType}, ValueRange{rowTokens},
             ValueRange{metaInit},
             ArrayRef<AffineMap>{
                 AffineMap::get(2, 0, rewriter.getAffineDimExpr(0)), identity},
             parallel,
             [&](OpBuilder &b, Location l, ValueRange args) {
               auto c = [&](int64_t v) -> Value {
                 return arith::ConstantIndexOp::create(b, l, v);
               };
               Value token =
                   arith::MaxSIOp::create(b, l, toIndex(b, l, args[0]), c(0));
               Value column = linalg::IndexOp::create(b, l, 1);
               Value isId = arith::CmpIOp::create(
                   b, l, arith::CmpIPredicate::ult, column, c(k));
               Value id = tensor::ExtractOp::create(
                   b, l, ids,
                   ValueRange{token,
                              arith::MinUIOp::create(b, l, column, c(k - 1))});
               if (metaType != i32)
                 id = arith::ExtSIOp::create(b, l, metaType, id);
               Value weight = tensor::ExtractOp::create(
                   b, l, weights,
                   ValueRange{token,
                              arith::SubIOp::create(
                                  b, l,
                                  arith::MaxUIOp::create(b, l, column, c(k)),
                                  c(k))});
               Value bits = arith::BitcastOp::create(b, l, metaType, weight);
               linalg::YieldOp::create(
                   b, l,
                   ValueRange{arith::SelectOp::create(b, l, isId, id, bits)});
             })
      .getResult(0);
}

/// The routed experts of an expert-parallel layer, a row per token and
/// destination rank: a token whose k experts live on fewer than k ranks
/// travels once to each of them, with its ids and weights, and comes back
/// as one row per rank, that rank's experts' weighted sum.
///
///   1. the slots' ranks, a slot whose rank an earlier slot of its token
///      already has marked empty (-1); moe.dispatch by rank packs the rows
///      to send (rank-major, token order), and the rows' ids and routing
///      weights (the weights' bits) as [rows, 2k] integers;
///   2. per-rank row counts: all-to-all, one count per rank pair;
///   3. rows and their ids and weights: two all-to-all-v, started together;
///   4. the rank's experts: ids outside the rank's block become empty
///      slots, the others local; local dispatch, moe.expert, and a
///      moe.combine by the routing weights into one row per received row;
///   5. results: all-to-all-v back, the reverse of 3.
///
/// The layer's combine then adds each token's returned rows with weight 1
/// (the slot that sent it) and nothing for the slots that did not, so
/// zero-computation experts, shared experts and constants are unchanged.
RoutedRows buildRankExchange(PatternRewriter &rewriter, LayerOp layer,
                             Value rowSource, RouteOp route) {
  Location loc = layer.getLoc();
  ExpertParallelAttr ep = layer.getExpertParallelAttr();
  FlatSymbolRefAttr grid = ep.getGrid();
  int64_t ranks = ep.getRanks(), perRank = ep.getExpertsPerRank();
  int64_t numExperts = ep.getNumExperts();
  Value ids = route.getIds(), weights = route.getWeights();
  auto idsType = cast<RankedTensorType>(ids.getType());
  int64_t k = idsType.getDimSize(1);
  Type scoreType = getElementTypeOrSelf(weights.getType());
  // Ids travel with the weights' bits, in integers of the weights' width.
  auto metaType = rewriter.getIntegerType(scoreType.getIntOrFloatBitWidth());
  auto i32 = rewriter.getI32Type();
  auto index = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(rewriter, loc, v);
  };
  auto i32Const = [&](int64_t v) -> Value {
    return arith::ConstantIntOp::create(rewriter, loc, i32, v);
  };
  auto toIndex = [&](OpBuilder &b, Location l, Value v) -> Value {
    return arith::IndexCastOp::create(b, l, b.getIndexType(), v);
  };
  auto parallel = [](int64_t rank) {
    return SmallVector<utils::IteratorType>(rank,
                                            utils::IteratorType::parallel);
  };
  AffineMap identity = rewriter.getMultiDimIdentityMap(2);
  auto emptyLike = [&](Value like, Type elementType) -> Value {
    return tensor::EmptyOp::create(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, like), elementType);
  };

  // 1. Each slot's rank, then the rows packed by rank and their ids and
  // weights.
  Value slotRanks = buildSlotRanks(rewriter, loc, ep, ids);
  auto rowSourceType = cast<RankedTensorType>(rowSource.getType());
  int64_t numTokens = rowSourceType.getDimSize(0);
  int64_t hidden = rowSourceType.getDimSize(1);
  int64_t numRows = mulSizes(numTokens, k);
  auto rowsType =
      RankedTensorType::get({numRows, hidden}, rowSourceType.getElementType());
  auto byRank = DispatchOp::create(
      rewriter, loc, rowsType, RankedTensorType::get({ranks + 1}, i32),
      RankedTensorType::get({numRows}, i32), slotRanks.getType(), rowSource,
      slotRanks, /*group_size=*/Value(), rewriter.getI64IntegerAttr(ranks),
      /*capacity_factor=*/FloatAttr(), /*expert_capacity=*/IntegerAttr());

  Value meta = buildRowMetadata(rewriter, loc, byRank.getRowTokens(), ids,
                                weights, metaType);

  // 2. Rows per destination rank, from the dispatch offsets.
  SmallVector<Value> rankOffsets;
  for (int64_t p = 0; p <= ranks; ++p)
    rankOffsets.push_back(tensor::ExtractOp::create(
        rewriter, loc, byRank.getOffsets(), ValueRange{index(p)}));
  SmallVector<Value> sendRows;
  for (int64_t p = 0; p < ranks; ++p)
    sendRows.push_back(arith::SubIOp::create(rewriter, loc, rankOffsets[p + 1],
                                             rankOffsets[p]));
  auto countsType = RankedTensorType::get({ranks}, i32);
  Value sendCounts =
      tensor::FromElementsOp::create(rewriter, loc, countsType, sendRows);
  Value ones = tensor::FromElementsOp::create(
      rewriter, loc, countsType, SmallVector<Value>(ranks, i32Const(1)));
  auto exchangeStart = [&](Value send, Value counts, Value recvCounts,
                           Value dest) {
    return startExchange(rewriter, loc, grid, send, counts, recvCounts, dest);
  };
  auto exchangeWait = [&](AllToAllStartOp start) {
    return waitExchange(rewriter, loc, start);
  };
  Value recvCounts = exchangeWait(exchangeStart(
      sendCounts, ones, ones,
      tensor::EmptyOp::create(rewriter, loc, countsType.getShape(), i32)));

  // 3. Rows, and their ids and weights.
  Value numReceived = index(0);
  for (int64_t p = 0; p < ranks; ++p)
    numReceived = arith::AddIOp::create(
        rewriter, loc, numReceived,
        toIndex(rewriter, loc,
                tensor::ExtractOp::create(rewriter, loc, recvCounts,
                                          ValueRange{index(p)})));
  auto rowsStart =
      exchangeStart(byRank.getRows(), sendCounts, recvCounts,
                    tensor::EmptyOp::create(rewriter, loc, rowsType.getShape(),
                                            rowsType.getElementType(),
                                            ValueRange{numReceived}));
  auto metaStart = exchangeStart(
      meta, sendCounts, recvCounts,
      tensor::EmptyOp::create(rewriter, loc,
                              cast<RankedTensorType>(meta.getType()).getShape(),
                              metaType, ValueRange{numReceived}));
  Value received = exchangeWait(rowsStart);
  Value receivedMeta = exchangeWait(metaStart);

  // 4. The rank's experts: [first, last) of the partition rule.
  Value rank =
      shard::ProcessLinearIndexOp::create(rewriter, loc, grid.getValue());
  SmallVector<int32_t> firstOfRank;
  for (int64_t p = 0; p <= ranks; ++p)
    firstOfRank.push_back(ep.getFirstExpert(p));
  Value firstTable = arith::ConstantOp::create(
      rewriter, loc,
      DenseIntElementsAttr::get(
          RankedTensorType::get({ranks + 1}, metaType),
          llvm::map_to_vector(firstOfRank, [&](int32_t v) {
            return APInt(metaType.getWidth(), v);
          })));
  Value first =
      tensor::ExtractOp::create(rewriter, loc, firstTable, ValueRange{rank});
  Value last = tensor::ExtractOp::create(
      rewriter, loc, firstTable,
      ValueRange{arith::AddIOp::create(rewriter, loc, rank, index(1))});
  auto receivedSlotsType =
      RankedTensorType::get({ShapedType::kDynamic, k}, metaType);
  auto metaColumns = [&](int64_t from) -> Value {
    return tensor::ExtractSliceOp::create(
        rewriter, loc, receivedSlotsType, receivedMeta,
        ArrayRef<OpFoldResult>{rewriter.getIndexAttr(0),
                               rewriter.getIndexAttr(from)},
        ArrayRef<OpFoldResult>{numReceived, rewriter.getIndexAttr(k)},
        ArrayRef<OpFoldResult>{rewriter.getIndexAttr(1),
                               rewriter.getIndexAttr(1)});
  };
  auto localIdsType = RankedTensorType::get({ShapedType::kDynamic, k}, i32);
  Value localIds =
      linalg::GenericOp::create(
          rewriter, loc, TypeRange{localIdsType}, ValueRange{metaColumns(0)},
          ValueRange{tensor::EmptyOp::create(rewriter, loc,
                                             localIdsType.getShape(), i32,
                                             ValueRange{numReceived})},
          ArrayRef<AffineMap>{identity, identity}, parallel(2),
          [&](OpBuilder &b, Location l, ValueRange args) {
            Value mine = arith::AndIOp::create(
                b, l,
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, args[0],
                                      first),
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, args[0],
                                      last));
            Value local = arith::SubIOp::create(b, l, args[0], first);
            if (metaType != i32)
              local = arith::TruncIOp::create(b, l, i32, local);
            linalg::YieldOp::create(
                b, l,
                ValueRange{arith::SelectOp::create(
                    b, l, mine, local,
                    arith::ConstantIntOp::create(b, l, i32, -1))});
          })
          .getResult(0);
  auto localWeightsType =
      RankedTensorType::get({ShapedType::kDynamic, k}, scoreType);
  Value localWeights =
      linalg::GenericOp::create(
          rewriter, loc, TypeRange{localWeightsType},
          ValueRange{metaColumns(k)},
          ValueRange{tensor::EmptyOp::create(
              rewriter, loc, localWeightsType.getShape(), scoreType,
              ValueRange{numReceived})},
          ArrayRef<AffineMap>{identity, identity}, parallel(2),
          [&](OpBuilder &b, Location l, ValueRange args) {
            linalg::YieldOp::create(
                b, l,
                ValueRange{arith::BitcastOp::create(b, l, scoreType, args[0])});
          })
          .getResult(0);
  Value partial = buildLocalExperts(rewriter, loc, layer, received, localIds,
                                    localWeights, perRank);

  // 5. Results back, in the order the rows were sent.
  Value returned = exchangeWait(exchangeStart(
      partial, recvCounts, sendCounts,
      tensor::EmptyOp::create(
          rewriter, loc, rowsType.getShape(), rowsType.getElementType(),
          ValueRange{toIndex(rewriter, loc, rankOffsets[ranks])})));

  // A routed slot that sent its token's row takes the row whole; its
  // token's other slots on that rank are in it already.
  Value unitWeights =
      linalg::GenericOp::create(
          rewriter, loc, TypeRange{weights.getType()},
          ValueRange{weights, ids, byRank.getSlotRows()},
          ValueRange{emptyLike(weights, scoreType)},
          ArrayRef<AffineMap>{identity, identity, identity, identity},
          parallel(2),
          [&](OpBuilder &b, Location l, ValueRange args) {
            auto c = [&](int64_t v) -> Value {
              return arith::ConstantIntOp::create(b, l, i32, v);
            };
            auto f = [&](double v) -> Value {
              return arith::ConstantOp::create(b, l,
                                               b.getFloatAttr(scoreType, v));
            };
            Value routed = arith::AndIOp::create(
                b, l,
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, args[1],
                                      c(0)),
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, args[1],
                                      c(numExperts)));
            Value sent = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge,
                                               args[2], c(0));
            Value unit = arith::SelectOp::create(b, l, sent, f(1.0), f(0.0));
            linalg::YieldOp::create(b, l,
                                    ValueRange{arith::SelectOp::create(
                                        b, l, routed, unit, args[0])});
          })
          .getResult(0);
  return {returned, unitWeights, byRank.getSlotRows()};
}

/// The dispatched `rows` ([R, H]) each scaled by its slot's routing weight
/// (moe.layer's `scale_input`): row r holds token `rowTokens[r]`, and the
/// token's slot j with `slotRows[t, j] == r` gives its weight (padding
/// rows, token -1, get 0). Rows and weights share their element type: the
/// stages compute in f32.
Value scaleRowsByWeights(PatternRewriter &rewriter, Location loc, Value rows,
                         Value rowTokens, Value slotRows, Value weights) {
  auto rowsType = cast<RankedTensorType>(rows.getType());
  auto weightsType = cast<RankedTensorType>(weights.getType());
  Type scoreType = weightsType.getElementType();
  int64_t k = weightsType.getDimSize(1);
  MLIRContext *ctx = rewriter.getContext();
  Value numRows = tensor::DimOp::create(rewriter, loc, rows, 0);
  auto rowWeightsType =
      RankedTensorType::get({rowsType.getDimSize(0)}, scoreType);
  Value rowWeightsInit = tensor::EmptyOp::create(
      rewriter, loc, rowWeightsType.getShape(), scoreType,
      rowWeightsType.isDynamicDim(0) ? ValueRange{numRows} : ValueRange{});
  AffineMap id1 = AffineMap::getMultiDimIdentityMap(1, ctx);
  Value rowWeights =
      linalg::GenericOp::create(
          rewriter, loc, TypeRange{rowWeightsType}, ValueRange{rowTokens},
          ValueRange{rowWeightsInit}, ArrayRef<AffineMap>{id1, id1},
          SmallVector<utils::IteratorType>{utils::IteratorType::parallel},
          [&](OpBuilder &b, Location l, ValueRange args) {
            Value row = arith::IndexCastOp::create(
                b, l, b.getI32Type(), linalg::IndexOp::create(b, l, 0));
            Value zeroI = arith::ConstantIntOp::create(b, l, b.getI32Type(), 0);
            Value token = arith::IndexCastOp::create(
                b, l, b.getIndexType(),
                arith::MaxSIOp::create(b, l, args[0], zeroI));
            Value weight =
                arith::ConstantOp::create(b, l, b.getFloatAttr(scoreType, 0.0));
            for (int64_t j = 0; j < k; ++j) {
              Value slot = arith::ConstantIndexOp::create(b, l, j);
              Value slotRow = tensor::ExtractOp::create(
                  b, l, slotRows, ValueRange{token, slot});
              Value slotWeight = tensor::ExtractOp::create(
                  b, l, weights, ValueRange{token, slot});
              Value mine = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq,
                                                 slotRow, row);
              weight = arith::SelectOp::create(b, l, mine, slotWeight, weight);
            }
            Value padding = arith::CmpIOp::create(
                b, l, arith::CmpIPredicate::slt, args[0], zeroI);
            Value zeroF =
                arith::ConstantOp::create(b, l, b.getFloatAttr(scoreType, 0.0));
            linalg::YieldOp::create(b, l,
                                    ValueRange{arith::SelectOp::create(
                                        b, l, padding, zeroF, weight)});
          })
          .getResult(0);
  Value scaledInit = tensor::EmptyOp::create(
      rewriter, loc, tensor::getMixedSizes(rewriter, loc, rows),
      rowsType.getElementType());
  AffineMap id2 = AffineMap::getMultiDimIdentityMap(2, ctx);
  AffineMap perRow = AffineMap::get(2, 0, getAffineDimExpr(0, ctx));
  return linalg::GenericOp::create(
             rewriter, loc, TypeRange{rowsType}, ValueRange{rows, rowWeights},
             ValueRange{scaledInit}, ArrayRef<AffineMap>{id2, perRow, id2},
             SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
             [&](OpBuilder &b, Location l, ValueRange args) {
               linalg::YieldOp::create(
                   b, l,
                   ValueRange{arith::MulFOp::create(b, l, args[0], args[1])});
             })
      .getResult(0);
}

struct DecomposeLayerPattern : OpRewritePattern<LayerOp> {
  DecomposeLayerPattern(MLIRContext *ctx,
                        const MoEDecomposeLayerOptions &options)
      : OpRewritePattern(ctx), bf16Rows(options.bf16Rows),
        roundF32Rows(options.roundF32Rows), fuseRouter(options.fuseRouter),
        epDispatch(options.epDispatch) {}

  LogicalResult matchAndRewrite(LayerOp layer,
                                PatternRewriter &rewriter) const override {
    Location loc = layer.getLoc();
    auto i32 = rewriter.getI32Type();
    Value input = layer.getInput();
    auto inputType = cast<RankedTensorType>(input.getType());

    // The stages work on [T, H]; a [B, S, H] layer is collapsed around them.
    SmallVector<ReassociationIndices> collapse = {{0, 1}, {2}};
    Value tokens = input;
    if (inputType.getRank() == 3)
      tokens = tensor::CollapseShapeOp::create(rewriter, loc, input, collapse);
    // bf16 tokens dispatched as they are for bf16 expert weights: both GEMM
    // operands bf16. Widening is exact, so only the bytes moved change; the
    // expert outputs stay f32 (rounded once, at the output). With
    // round-f32-rows, f32 tokens (an f32 model's, its expert weights made
    // bf16 by -moe-convert-expert-weights at the user's request) are
    // rounded to bf16 rows for them; otherwise they stay f32, as exact.
    Type tokenElement = getElementTypeOrSelf(tokens.getType());
    auto narrowFor = [&](Value weight) -> Value {
      if (!bf16Rows || layer.getExpertParallelAttr() ||
          !getElementTypeOrSelf(weight.getType()).isBF16() ||
          !(tokenElement.isBF16() || (roundF32Rows && tokenElement.isF32())))
        return Value();
      return convertElements(rewriter, loc, tokens, rewriter.getBF16Type());
    };
    // Rows scaled by their weights are computed in the tokens' type (as
    // the exported graph does) and handed to the experts as such.
    Value narrowRows;
    if (!layer.getQuantAttr() && !layer.getScaleInput())
      narrowRows = narrowFor(layer.getFc1());
    Value sharedRows;
    if (Value sharedFc1 = layer.getSharedFc1()) {
      Type sharedElement = getElementTypeOrSelf(sharedFc1.getType());
      if (narrowRows &&
          sharedElement == getElementTypeOrSelf(layer.getFc1().getType()))
        sharedRows = narrowRows;
      else
        sharedRows = narrowFor(sharedFc1);
    }
    tokens = widenHalf(rewriter, loc, tokens);
    ExpertParallelAttr ep = layer.getExpertParallelAttr();
    Type stageTokensType = tokens.getType();
    if (ep)
      tokens = withDynamicRows(rewriter, loc, tokens);
    // The route's input: the logits, or the tokens with the router weight
    // (of the tokens' type), or logits computed from it when not fused.
    Value routeInput, routerWeight;
    if (Value logits = layer.getLogits()) {
      routeInput = widenHalf(rewriter, loc, logits);
      if (ep)
        routeInput = withDynamicRows(rewriter, loc, routeInput);
    } else {
      routeInput = tokens;
      routerWeight = convertElements(rewriter, loc, layer.getRouterWeight(),
                                     getElementTypeOrSelf(tokens.getType()));
      if (!fuseRouter) {
        routeInput = buildRouterLogits(rewriter, loc, tokens, routerWeight);
        routerWeight = Value();
      }
    }
    Value rowSource = narrowRows ? narrowRows : tokens;
    auto tokensType = cast<RankedTensorType>(tokens.getType());
    int64_t numTokens = tokensType.getDimSize(0);
    int64_t hidden = tokensType.getDimSize(1);
    int64_t k = layer.getK();
    int64_t numExperts =
        ep ? ep.getNumExperts()
           : cast<RankedTensorType>(layer.getFc1().getType()).getDimSize(0);
    Type scoreType = getElementTypeOrSelf(routeInput.getType());

    auto route = RouteOp::create(
        rewriter, loc, RankedTensorType::get({numTokens, k}, scoreType),
        RankedTensorType::get({numTokens, k}, i32), routeInput, routerWeight,
        layer.getScoreBias(), layer.getKAttr(), layer.getScoringAttr(),
        layer.getNormalizeAttr(), layer.getNumGroupsAttr(),
        layer.getTopGroupsAttr(), layer.getGroupScoringAttr(),
        layer.getTopPAttr(), layer.getScalingAttr());

    RoutedRows routed;
    // Dropped rows passed through would look like the slots that share
    // their token's row with an earlier slot of the same rank.
    if (ep && epDispatch == "rank" && !layer.getDroppedPassThrough()) {
      routed = buildRankExchange(rewriter, layer, rowSource, route);
    } else {
      int64_t numRows = mulSizes(numTokens, k);
      // A per-sequence capacity groups the flattened tokens by sequence.
      Value groupSize;
      if (layer.getCapacityPerSequence())
        groupSize = tensor::DimOp::create(rewriter, loc, input, 1);
      auto dispatch = DispatchOp::create(
          rewriter, loc,
          RankedTensorType::get({numRows, hidden},
                                getElementTypeOrSelf(rowSource.getType())),
          RankedTensorType::get({numExperts + 1}, i32),
          RankedTensorType::get({numRows}, i32),
          RankedTensorType::get({numTokens, k}, i32), rowSource, route.getIds(),
          groupSize, rewriter.getI64IntegerAttr(numExperts),
          layer.getCapacityFactorAttr(), layer.getExpertCapacityAttr());
      routed.weights = route.getWeights();
      routed.slotRows = dispatch.getSlotRows();
      Value rows = dispatch.getRows();
      if (layer.getScaleInput()) {
        // The weights scale what the experts read; their outputs are summed
        // as they are.
        rows = scaleRowsByWeights(rewriter, loc, rows, dispatch.getRowTokens(),
                                  dispatch.getSlotRows(), route.getWeights());
        routed.weights = filledTensor(
            rewriter, loc,
            tensor::getMixedSizes(rewriter, loc, route.getWeights()), scoreType,
            1.0);
      }
      if (ep)
        routed.expertOutput =
            buildExpertExchange(rewriter, layer, dispatch, scoreType);
      else
        routed.expertOutput = buildRoutedExperts(
            rewriter, loc, layer,
            RankedTensorType::get({numRows, hidden},
                                  tokensType.getElementType()),
            rows, dispatch.getOffsets());
    }

    Value shared;
    if (layer.getSharedFc1())
      shared =
          buildSharedExperts(rewriter, layer, sharedRows ? sharedRows : tokens,
                             cast<RankedTensorType>(tokens.getType()));
    // Only hand the token input to combine when something there reads it,
    // so the common case keeps the minimal form.
    bool needsInput = layer.getSharedGate() || layer.getNumZeroExperts() > 0 ||
                      layer.getDroppedPassThrough();
    Value combined = CombineOp::create(
        rewriter, loc, tokensType, routed.expertOutput, routed.weights,
        route.getIds(), routed.slotRows, needsInput ? tokens : Value(), shared,
        layer.getSharedGate(), layer.getConstants(), layer.getConstantGates(),
        rewriter.getI64IntegerAttr(numExperts), layer.getZeroExpertsAttr(),
        layer.getDroppedPassThroughAttr());
    if (combined.getType() != stageTokensType &&
        cast<RankedTensorType>(stageTokensType).getElementType() ==
            cast<RankedTensorType>(combined.getType()).getElementType())
      combined = tensor::CastOp::create(rewriter, loc, stageTokensType,
                                        combined);
    combined =
        convertElements(rewriter, loc, combined, inputType.getElementType());

    if (inputType.getRank() == 3) {
      // The output takes the input's [B, S] split, which a dynamic B * S
      // alone does not determine.
      SmallVector<OpFoldResult> outputShape =
          tensor::getMixedSizes(rewriter, loc, input);
      combined = tensor::ExpandShapeOp::create(
          rewriter, loc, layer.getType(), combined, collapse, outputShape);
    }
    if (combined.getType() != layer.getType())
      combined = tensor::CastOp::create(rewriter, loc, layer.getType(),
                                        combined);
    rewriter.replaceOp(layer, combined);
    return success();
  }

  bool bf16Rows;
  bool roundF32Rows;
  bool fuseRouter;
  std::string epDispatch;
};

struct MoEDecomposeLayerPass
    : moe::impl::MoEDecomposeLayerBase<MoEDecomposeLayerPass> {
  using MoEDecomposeLayerBase::MoEDecomposeLayerBase;

  void runOnOperation() override {
    if (epDispatch != "expert" && epDispatch != "rank") {
      getOperation()->emitError()
          << "-moe-decompose-layer: ep-dispatch must be 'expert' or 'rank', "
             "got '"
          << epDispatch << "'";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    MoEDecomposeLayerOptions options;
    options.bf16Rows = bf16Rows;
    options.roundF32Rows = roundF32Rows;
    options.fuseRouter = fuseRouter;
    options.epDispatch = epDispatch;
    populateDecomposeLayerPatterns(patterns, options);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace

Value moe::convertElements(OpBuilder &rewriter, Location loc, Value value,
                           Type elementType) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getElementType() == elementType)
    return value;
  bool extend =
      type.getElementTypeBitWidth() < elementType.getIntOrFloatBitWidth();
  Value init = tensor::EmptyOp::create(
      rewriter, loc, tensor::getMixedSizes(rewriter, loc, value), elementType);
  AffineMap identity = rewriter.getMultiDimIdentityMap(type.getRank());
  SmallVector<utils::IteratorType> iterators(type.getRank(),
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             rewriter, loc, init.getType(), ValueRange{value}, ValueRange{init},
             ArrayRef<AffineMap>{identity, identity}, iterators,
             [&](OpBuilder &b, Location nested, ValueRange args) {
               Value converted =
                   extend
                       ? arith::ExtFOp::create(b, nested, elementType, args[0])
                             .getResult()
                       : arith::TruncFOp::create(b, nested, elementType,
                                                 args[0])
                             .getResult();
               linalg::YieldOp::create(b, nested, converted);
             })
      .getResult(0);
}

void mlir::moe::populateDecomposeLayerPatterns(
    RewritePatternSet &patterns, const MoEDecomposeLayerOptions &options) {
  patterns.add<DecomposeLayerPattern>(patterns.getContext(), options);
}
