//===- BufferizableOpInterfaceImpl.cpp - bufferize the moe stage ops --------===//
//
// The stage ops bufferize into what they compute: memref loop nests for
// routing, dispatch and combine, and linalg contractions on row and column
// slices for the grouped FFN (two parallel loops over experts x column
// panels), so that one-shot bufferization is also the lowering out of the
// moe dialect. Every result is a fresh allocation; operands are only
// read. The expert GEMMs stay linalg ops so that later passes can tile and
// vectorize them.
//
// Ids, offsets and row indices come from tensors that a caller may fill, so
// every one of them is range-checked before it is used as an index: an
// out-of-range id is ignored (as the semantics say for ids outside
// [0, E + Z)), never a wild memory access.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/BufferizableOpInterfaceImpl.h"

#include "moe-mlir/Transforms/ExpertKernels.h"
#include "moe-mlir/Transforms/KernelEmitter.h"
#include "moe-mlir/Transforms/StageKernels.h"
#include "MoE/IR/MoEOps.h"
#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/DialectRegistry.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::bufferization;

namespace {

/// Tokens per block of moe.route's parallel loop: with the router fused,
/// four of -moe-vectorize-contractions' default 3-row register blocks of
/// the logits; parallel work from T = 24 on.
constexpr int64_t kRouteBlockTokens = 12;

/// f32 lanes of the route's vector form (emitRouteToken): a 512-bit
/// register with AVX-512, two or four of them elsewhere, as LLVM splits
/// the vectors for the target.
constexpr int64_t kRouteVectorLanes = 16;

/// Allocates an identity-layout buffer for a result of tensor type `type`,
/// whose only possibly dynamic dimension is the leading one, of size
/// `leading`.
FailureOr<Value> allocBuffer(OpBuilder &b, Location loc, RankedTensorType type,
                             Value leading,
                             const BufferizationOptions &options) {
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    if (!type.isDynamicDim(d))
      continue;
    if (d != 0)
      return emitError(loc) << "only the leading dimension of a moe result "
                               "may be dynamic, got "
                            << type;
    dynamicSizes.push_back(leading);
  }
  auto memrefType = MemRefType::get(type.getShape(), type.getElementType());
  return options.createAlloc(b, loc, memrefType, dynamicSizes);
}

/// A rank-reduced view of `source[index]` along the leading dimension.
Value sliceLeading(ImplicitLocOpBuilder &b, Value source, Value index) {
  auto type = cast<MemRefType>(source.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes, strides(rank, b.getIndexAttr(1));
  offsets[0] = index;
  sizes.push_back(b.getIndexAttr(1));
  for (int64_t d = 1; d < rank; ++d) {
    if (type.isDynamicDim(d))
      sizes.push_back(memref::DimOp::create(b, source, d).getResult());
    else
      sizes.push_back(b.getIndexAttr(type.getDimSize(d)));
  }
  auto resultType = memref::SubViewOp::inferRankReducedResultType(
      type.getShape().drop_front(), type, offsets, sizes, strides);
  return memref::SubViewOp::create(b, resultType, source, offsets, sizes,
                                   strides);
}

/// Rows `[start, start + count)` of a rank-2 buffer.
Value sliceRows(ImplicitLocOpBuilder &b, Value source, Value start,
                Value count) {
  auto type = cast<MemRefType>(source.getType());
  OpFoldResult cols =
      type.isDynamicDim(1)
          ? OpFoldResult(memref::DimOp::create(b, source, 1).getResult())
          : OpFoldResult(b.getIndexAttr(type.getDimSize(1)));
  SmallVector<OpFoldResult> offsets = {start, b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {count, cols};
  SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
  return memref::SubViewOp::create(b, source, offsets, sizes, strides);
}

/// Indexing maps of a linalg.generic from one result list per operand.
SmallVector<AffineMap>
indexingMaps(std::initializer_list<std::initializer_list<AffineExpr>> lists,
             MLIRContext *ctx) {
  SmallVector<ArrayRef<AffineExpr>> refs;
  for (const auto &list : lists)
    refs.push_back(ArrayRef<AffineExpr>(list));
  return AffineMap::inferFromExprList(refs, ctx);
}

/// The block `[r0, r0 + rows) x [c0, c0 + cols)` of a rank-2 buffer.
Value sliceBlock(ImplicitLocOpBuilder &b, Value source, OpFoldResult r0,
                 OpFoldResult rows, OpFoldResult c0, OpFoldResult cols) {
  SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
  return memref::SubViewOp::create(b, source,
                                   SmallVector<OpFoldResult>{r0, c0},
                                   SmallVector<OpFoldResult>{rows, cols},
                                   strides);
}

/// Elements `[start, start + count)` of a rank-1 buffer.
Value sliceRange(ImplicitLocOpBuilder &b, Value source, OpFoldResult start,
                 OpFoldResult count) {
  return memref::SubViewOp::create(
      b, source, SmallVector<OpFoldResult>{start},
      SmallVector<OpFoldResult>{count},
      SmallVector<OpFoldResult>{b.getIndexAttr(1)});
}

/// Shared model: moe stage ops read every operand, write none, and return
/// fresh allocations.
template <typename ConcreteModel, typename OpTy>
struct StageOpInterface
    : public BufferizableOpInterface::ExternalModel<ConcreteModel, OpTy> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &,
                               const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &,
                                      const AnalysisState &) const {
    return {};
  }
  bool bufferizesToAllocation(Operation *, Value) const { return true; }
};

/// Returns the buffer of an optional operand, or null.
Value bufferOf(IRMapping &map, Value operand) {
  return operand ? map.lookup(operand) : Value();
}

/// Maps every operand of `op` to its buffer.
FailureOr<IRMapping> mapOperandBuffers(RewriterBase &rewriter, Operation *op,
                                       const BufferizationOptions &options,
                                       const BufferizationState &state) {
  IRMapping map;
  for (Value operand : op->getOperands()) {
    // Scalars (moe.dispatch's group size) are used as they are.
    if (!isa<TensorType>(operand.getType()))
      continue;
    FailureOr<Value> buffer = getBuffer(rewriter, operand, options, state);
    if (failed(buffer))
      return failure();
    map.map(operand, *buffer);
  }
  return map;
}

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

struct RouteOpInterface : StageOpInterface<RouteOpInterface, RouteOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto route = cast<RouteOp>(op);
    int64_t numExperts = route.getNumExperts();
    if (ShapedType::isDynamic(numExperts))
      return op->emitError("lowering moe.route needs a static expert count");
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();

    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    Value input = map->lookup(route.getInput());
    Value bias = bufferOf(*map, route.getBias());
    Value tokens = e.dim(input, 0);
    FailureOr<Value> weights =
        allocBuffer(b, b.getLoc(), route.getWeights().getType(), tokens,
                    options);
    FailureOr<Value> ids = allocBuffer(b, b.getLoc(), route.getIds().getType(),
                                       tokens, options);
    if (failed(weights) || failed(ids))
      return failure();

    if (Value routerWeight = bufferOf(*map, route.getRouterWeight()))
      emitFusedRoute(e, route, input, tokens, routerWeight, bias, *weights,
                     *ids);
    else
      emitRoute(e, route, input, tokens, bias, *weights, *ids);
    replaceOpWithBufferizedValues(rewriter, op, {*weights, *ids});
    return success();
  }

  /// Routes the tokens of `logits` in parallel blocks of kRouteBlockTokens,
  /// each block in turn with a scratch of its own.
  static void emitRoute(KernelEmitter &e, RouteOp route, Value logits,
                        Value tokens, Value bias, Value weights, Value ids) {
    ImplicitLocOpBuilder &b = e.builder();
    Value cBlock = e.index(kRouteBlockTokens);
    e.parallelFor(e.index(0), tokens, cBlock, [&](Value t0) {
      Value end = arith::MinUIOp::create(b, e.addi(t0, cBlock), tokens);
      // On the heap: see RouteScratch::allocate.
      RouteScratch scratch = RouteScratch::allocate(e, route, /*onHeap=*/true);
      e.loop(t0, end, [&](Value t) {
        emitRouteToken(e, route, logits, bias, weights, ids, t, scratch,
                       kRouteVectorLanes);
      });
    });
  }

  /// Routes blocks of kRouteBlockTokens tokens in parallel: each block's
  /// logits, `input . router_weight^T`, go to a `[block, E]` scratch of its
  /// own by the transposed-B contraction (-moe-vectorize-contractions makes
  /// it the GEMM kernel) and are routed while they are in L1.
  static void emitFusedRoute(KernelEmitter &e, RouteOp route, Value input,
                             Value tokens, Value routerWeight, Value bias,
                             Value weights, Value ids) {
    ImplicitLocOpBuilder &b = e.builder();
    Type scoreType = route.getScoreType();
    int64_t numExperts = route.getNumExperts();
    Value cBlock = e.index(kRouteBlockTokens);
    e.parallelFor(e.index(0), tokens, cBlock, [&](Value t0) {
      Value count = arith::MinUIOp::create(b, cBlock, e.subi(tokens, t0));
      // On the heap: the body runs once per block on a worker (see
      // RouteScratch::allocate); the buffer-deallocation pipeline frees it.
      Value block = memref::AllocOp::create(
          b, MemRefType::get({kRouteBlockTokens, numExperts}, scoreType));
      Value logits = sliceBlock(b, block, b.getIndexAttr(0), count,
                                b.getIndexAttr(0),
                                b.getIndexAttr(numExperts));
      linalg::FillOp::create(b, e.f(scoreType, 0.0), logits);
      emitMatmulTransposedB(b, sliceRows(b, input, t0, count), routerWeight,
                            logits);
      RouteScratch scratch = RouteScratch::allocate(e, route, /*onHeap=*/true);
      Value blockWeights = sliceRows(b, weights, t0, count);
      Value blockIds = sliceRows(b, ids, t0, count);
      e.loop(e.index(0), count, [&](Value t) {
        emitRouteToken(e, route, logits, bias, blockWeights, blockIds, t,
                       scratch, kRouteVectorLanes);
      });
    });
  }
};

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

struct DispatchOpInterface
    : StageOpInterface<DispatchOpInterface, DispatchOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto dispatch = cast<DispatchOp>(op);
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    Value input = map->lookup(dispatch.getInput());
    Value idsBuf = map->lookup(dispatch.getIds());
    Value tokens = e.dim(input, 0);
    Value hidden = e.dim(input, 1);
    int64_t k = dispatch.getIds().getType().getDimSize(1);
    if (ShapedType::isDynamic(k))
      return op->emitError("lowering moe.dispatch needs a static k");
    int64_t numExperts = dispatch.getNumExperts();
    Value c0 = e.index(0), c1 = e.index(1), ck = e.index(k);
    Value cE = e.index(numExperts);
    Value numRows = e.muli(tokens, ck);

    FailureOr<Value> rows = allocBuffer(
        b, b.getLoc(), dispatch.getRows().getType(), numRows,
        options);
    FailureOr<Value> offsets = allocBuffer(
        b, b.getLoc(), dispatch.getOffsets().getType(), Value(), options);
    FailureOr<Value> rowTokens = allocBuffer(
        b, b.getLoc(), dispatch.getRowTokens().getType(), numRows,
        options);
    FailureOr<Value> slotRows = allocBuffer(
        b, b.getLoc(), dispatch.getSlotRows().getType(), tokens,
        options);
    if (failed(rows) || failed(offsets) || failed(rowTokens) ||
        failed(slotRows))
      return failure();

    // counts[e], then the running write position of each expert.
    Value counts = memref::AllocaOp::create(
        b, MemRefType::get({numExperts}, b.getIndexType()));
    e.loop(c0, cE, [&](Value x) { e.store(c0, counts, x); });

    auto routedExpert = [&](Value t, Value j) {
      Value id = e.toIndex(e.load(idsBuf, {t, j}));
      Value valid = e.land(e.cmpi(arith::CmpIPredicate::sge, id, c0),
                           e.cmpi(arith::CmpIPredicate::slt, id, cE));
      return std::make_pair(valid, e.select(valid, id, c0));
    };

    // Pass 1: count the assignments each expert takes. slot_rows[t, j]
    // temporarily records whether (t, j) is dispatched (0) or not (-1).
    std::optional<APFloat> capacityFactor = dispatch.getCapacityFactor();
    Value capacity;
    if (capacityFactor) {
      // C = ceil(c * (T * k) / E), in f64 as the semantics define it.
      Type f64 = b.getF64Type();
      Value assignments = arith::UIToFPOp::create(
          b, f64, arith::IndexCastUIOp::create(b, b.getI64Type(), numRows));
      Value c = e.mulf(e.f(f64, capacityFactor->convertToDouble()),
                       assignments);
      Value perExpert =
          math::CeilOp::create(b, e.divf(c, e.f(f64, numExperts)));
      capacity = arith::IndexCastUIOp::create(
          b, b.getIndexType(),
          arith::FPToUIOp::create(b, b.getI64Type(), perExpert));
    } else if (std::optional<uint64_t> perGroup =
                   dispatch.getExpertCapacity()) {
      capacity = e.index(static_cast<int64_t>(*perGroup));
    }
    auto markSlot = [&](Value t, Value j, Value take, Value id) {
      e.ifThenElse(
          take,
          [&] {
            e.store(e.addi(e.load(counts, id), c1), counts, id);
            e.store(e.i32(0), *slotRows, {t, j});
          },
          [&] { e.store(e.i32(-1), *slotRows, {t, j}); });
    };
    if (!capacity) {
      e.loop(c0, ck, [&](Value j) {
        e.loop(c0, tokens, [&](Value t) {
          auto [valid, id] = routedExpert(t, j);
          markSlot(t, j, valid, id);
        });
      });
    } else {
      // Capacity competition is slot-major within each group of
      // consecutive tokens (one group of all tokens without group_size);
      // used[e] counts the group's admissions.
      Value groupSize = tokens;
      if (Value given = dispatch.getGroupSize())
        groupSize = given;
      groupSize = arith::MaxUIOp::create(b, groupSize, c1);
      Value numGroups = arith::CeilDivUIOp::create(b, tokens, groupSize);
      Value used = memref::AllocaOp::create(
          b, MemRefType::get({numExperts}, b.getIndexType()));
      e.loop(c0, numGroups, [&](Value group) {
        Value first = e.muli(group, groupSize);
        Value last =
            arith::MinUIOp::create(b, e.addi(first, groupSize), tokens);
        e.loop(c0, cE, [&](Value x) { e.store(c0, used, x); });
        e.loop(c0, ck, [&](Value j) {
          e.loop(first, last, [&](Value t) {
            auto [valid, id] = routedExpert(t, j);
            Value taken = e.load(used, id);
            Value take = e.land(
                valid, e.cmpi(arith::CmpIPredicate::ult, taken, capacity));
            e.ifThen(take, [&] { e.store(e.addi(taken, c1), used, id); });
            markSlot(t, j, take, id);
          });
        });
      });
    }

    // Pass 2: prefix sums; counts becomes each expert's write cursor.
    Value used = e.loop(c0, cE, {c0}, [&](Value x, ValueRange acc) {
      e.store(e.toI32(acc[0]), *offsets, x);
      Value next = e.addi(acc[0], e.load(counts, x));
      e.store(acc[0], counts, x);
      return SmallVector<Value>{next};
    })[0];
    e.store(e.toI32(used), *offsets, cE);

    // Pass 3: place rows in token order inside each expert.
    e.loop(c0, tokens, [&](Value t) {
      e.loop(c0, ck, [&](Value j) {
        auto [valid, id] = routedExpert(t, j);
        Value dispatched = e.land(
            valid, e.cmpi(arith::CmpIPredicate::eq,
                          e.load(*slotRows, {t, j}), e.i32(0)));
        e.ifThen(dispatched, [&] {
          Value row = e.load(counts, id);
          e.store(e.addi(row, c1), counts, id);
          e.store(e.toI32(row), *slotRows, {t, j});
          e.store(e.toI32(t), *rowTokens, row);
        });
      });
    });
    e.loop(used, numRows,
           [&](Value r) { e.store(e.i32(-1), *rowTokens, r); });

    // Pass 4: gather the rows (zero for padding), unless nothing reads
    // them: the experts read the tokens in place (-moe-fuse-gather).
    if (!dispatch.getRows().use_empty()) {
      Type elementType = dispatch.getRows().getType().getElementType();
      Value zero = e.f(elementType, 0.0);
      e.loop(c0, numRows, [&](Value r) {
        Value t = e.toIndex(e.load(*rowTokens, r));
        Value real = e.cmpi(arith::CmpIPredicate::sge, t, c0);
        Value safeT = e.select(real, t, c0);
        e.loop(c0, hidden, [&](Value h) {
          Value v = e.select(real, e.load(input, {safeT, h}), zero);
          e.store(v, *rows, {r, h});
        });
      });
    }

    replaceOpWithBufferizedValues(rewriter, op,
                                  {*rows, *offsets, *rowTokens, *slotRows});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.expert
//===----------------------------------------------------------------------===//

/// Columns per panel in the grouped schedule of float experts (at most).
/// A panel is a multiple of the register block's columns; 64 columns of
/// weight rows are 64 x H contiguous elements, long streams for the
/// hardware prefetcher, and an expert's I or H columns still split into
/// enough panels to share among threads at decode, when an expert has a
/// row or two.
constexpr int64_t kExpertPanelColumns = 64;

/// How the grouped schedule splits `columns` into panels: `width` columns
/// each, the last one shorter unless `exact`.
struct PanelSplit {
  int64_t width;
  bool exact;
};

/// Weight bytes a panel of quantised experts should read at least (up to
/// kMaxQuantizedPanelColumns columns): a quarter or an eighth of a float
/// panel's bytes per column makes 64-column panels short streams (12 KiB
/// for int4 fc2 rows of 384 columns), each paying the loop's and the
/// kernel's set-up and the prefetchers' ramp. On int4 Qwen3-30B-A3B / 2
/// panels of 128 KiB measured 1.24-1.51x at T = 1-64 against 64 columns,
/// and better than 64 KiB (benchmarks/RESULTS.md).
constexpr int64_t kQuantizedPanelBytes = 128 * 1024;
constexpr int64_t kMaxQuantizedPanelColumns = 256;

/// A static `columns` up to the panel width whole, else the widest multiple
/// of 8 from half of the panel width up to it that divides it, so that
/// every panel has the same static width; otherwise the panel width with a shorter last panel (narrow
/// panels would multiply the iterations and the rereading of rows). The
/// width is kExpertPanelColumns, or for quantised weights of
/// `quantizedBytesPerColumn` bytes per output column the power of two that
/// makes a panel kQuantizedPanelBytes (from kExpertPanelColumns up to
/// kMaxQuantizedPanelColumns).
PanelSplit splitIntoPanels(int64_t columns,
                           int64_t quantizedBytesPerColumn = 0) {
  int64_t width = kExpertPanelColumns;
  if (quantizedBytesPerColumn > 0)
    width = std::clamp<int64_t>(
        llvm::PowerOf2Ceil(llvm::divideCeil(kQuantizedPanelBytes,
                                            quantizedBytesPerColumn)),
        kExpertPanelColumns, kMaxQuantizedPanelColumns);
  if (ShapedType::isDynamic(columns))
    return {width, false};
  // A static `columns` of at most the width is one panel.
  if (columns <= width)
    return {columns, true};
  for (int64_t w = width; w >= width / 2; w -= 8)
    if (columns % w == 0)
      return {w, true};
  return {width, false};
}

} // namespace

bool mlir::moe::expertColumnsFitPanels(int64_t columns, int64_t panelWidth,
                                       int64_t quantizedBytesPerColumn) {
  return !ShapedType::isDynamic(columns) && columns % panelWidth == 0 &&
         splitIntoPanels(columns, quantizedBytesPerColumn).width % panelWidth ==
             0;
}

namespace {

/// Expert `x`'s dispatched rows `[start, start + count)`, clamped to the
/// `numRows` rows there are (offsets come from a tensor a caller may fill).
std::pair<Value, Value> expertRowRange(KernelEmitter &e, Value offsets,
                                       Value x, Value numRows) {
  Value start = clampRowOffset(e, e.load(offsets, x), numRows);
  Value next = e.load(offsets, e.addi(x, e.index(1)));
  Value end = arith::MaxSIOp::create(
      e.builder(), clampRowOffset(e, next, numRows), start);
  return {start, e.subi(end, start)};
}

/// Panel `panel`'s first column and width among `columns`.
std::pair<Value, OpFoldResult> panelColumns(ImplicitLocOpBuilder &b,
                                            Value panel, Value columns,
                                            PanelSplit split) {
  KernelEmitter e(b);
  Value width = e.index(split.width);
  Value first = e.muli(panel, width);
  if (split.exact)
    return {first, b.getIndexAttr(split.width)};
  return {first,
          arith::MinUIOp::create(b, width, e.subi(columns, first)).getResult()};
}

/// Average dispatched rows per expert below which the grouped schedule
/// runs panels outermost; from this many on, experts.
constexpr int64_t kPanelMajorRowsPerExpert = 16;

/// Whether the grouped schedule runs panels outermost for `numRows`
/// dispatched rows: fewer than kPanelMajorRowsPerExpert per expert.
Value isPanelMajor(KernelEmitter &e, Value numRows, int64_t numExperts) {
  return e.cmpi(arith::CmpIPredicate::ult, numRows,
                e.index(kPanelMajorRowsPerExpert * numExperts));
}

/// Runs `body(x, start, count, c0, width)` for every expert `x` that has
/// rows (`[start, start + count)` of the dispatched rows) and every panel
/// `[c0, c0 + width)` of `columns`, all in one scf.parallel over panels and
/// experts. The worker pool hands out contiguous chunks of iterations, so
/// the order of the two dimensions decides what a thread gets:
///
/// * with few rows per expert (decode, many small experts) panels are
///   outermost, so that every expert's columns are split among the
///   threads; chunks of whole experts would be as uneven as the experts'
///   row counts, and an expert's rows are cheap to reload;
/// * with many, experts are outermost, so that a thread keeps one expert's
///   rows in L2 over consecutive panels (at T = 512 panel-major order was
///   10-15% slower on Mixtral-8x7B / 4, rereading 0.5 MiB of rows from L3
///   for every panel).
///
/// The choice is made at run time from the number of rows (one loop when
/// `columns` is a single panel).
/// With `expertMajor`, experts are outermost whatever the rows (the caller
/// has made the choice).
void forEachExpertPanel(
    ImplicitLocOpBuilder &b, Value offsets, int64_t numExperts, Value numRows,
    Value columns, PanelSplit split,
    function_ref<void(Value, Value, Value, Value, OpFoldResult)> body,
    bool expertMajor = false) {
  KernelEmitter e(b);
  Value c0 = e.index(0), c1 = e.index(1);
  Value width = e.index(split.width);
  Value numPanels = arith::CeilDivUIOp::create(b, columns, width);
  auto emitLoop = [&](bool panelMajor) {
    Value experts = e.index(numExperts);
    auto loop = scf::ParallelOp::create(
        b, ValueRange{c0, c0},
        panelMajor ? ValueRange{numPanels, experts}
                   : ValueRange{experts, numPanels},
        ValueRange{c1, c1});
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    Value panel = loop.getInductionVars()[panelMajor ? 0 : 1];
    Value x = loop.getInductionVars()[panelMajor ? 1 : 0];
    auto [start, count] = expertRowRange(e, offsets, x, numRows);
    e.ifThen(e.cmpi(arith::CmpIPredicate::sgt, count, c0), [&] {
      auto [first, cols] = panelColumns(b, panel, columns, split);
      body(x, start, count, first, cols);
    });
    // The pool's contiguous chunks mostly give the iteration after this one
    // to the same thread: (x, panel + 1), whose weights follow these, or
    // in panel-major order (x + 1, panel). A second projection's panel in
    // the same iteration (fc3, concatenated SwiGLU) prefetches its own
    // next ones an iteration early, still in L2 when read.
    markNextWeights(loop, /*followingPanels=*/!panelMajor);
  };
  // With one panel there is no order to choose.
  std::optional<int64_t> staticColumns = getConstantIntValue(columns);
  if (expertMajor || (staticColumns && *staticColumns <= split.width)) {
    emitLoop(false);
    return;
  }
  e.ifThenElse(
      isPanelMajor(e, numRows, numExperts), [&] { emitLoop(true); },
      [&] { emitLoop(false); });
}

/// One scf.parallel over the column panels of `columns`, calling
/// `body(first, width)` inside it for each panel.
void forEachPanel(ImplicitLocOpBuilder &b, Value columns, PanelSplit split,
                  function_ref<void(Value, OpFoldResult)> body) {
  KernelEmitter e(b);
  Value numPanels =
      arith::CeilDivUIOp::create(b, columns, e.index(split.width));
  e.parallelFor(e.index(0), numPanels, Value(), [&](Value panel) {
    auto [first, width] = panelColumns(b, panel, columns, split);
    body(first, width);
  });
}

/// Rows per block of fc2's output when the combine is fused: the block of
/// a panel (128 x 64 f32, 32 KiB) is scaled and added to the tokens' rows
/// while it is in L1/L2.
constexpr int64_t kCombineRowBlock = 128;

/// The schedule of fc2 when the combine is fused into it: one scf.parallel
/// over the column panels of `columns`, each panel taking every expert with
/// rows in turn and the expert's rows in blocks of at most
/// kCombineRowBlock, calling `body(x, blockStart, blockRows, first,
/// width)`. A panel's columns of the output belong to one iteration, so no
/// two threads add to the same element, and every token gets its rows in
/// row order (experts ascending) however the panels are shared out.
/// `prologue()` runs once per panel, before the experts.
void forEachPanelOfEveryExpert(
    ImplicitLocOpBuilder &b, Value offsets, int64_t numExperts, Value numRows,
    Value columns, PanelSplit split, function_ref<void()> prologue,
    function_ref<void(Value, Value, Value, Value, OpFoldResult)> body) {
  forEachPanel(b, columns, split, [&](Value first, OpFoldResult width) {
    KernelEmitter e(b);
    prologue();
    Value c0 = e.index(0);
    Value blockRows = e.index(kCombineRowBlock);
    e.loop(c0, e.index(numExperts), [&](Value x) {
      auto [start, count] = expertRowRange(e, offsets, x, numRows);
      e.loop(
          c0, count,
          [&](Value r0) {
            Value rows =
                arith::MinUIOp::create(b, blockRows, e.subi(count, r0));
            body(x, e.addi(start, r0), rows, first, width);
          },
          blockRows);
    });
  });
  // The loop just emitted runs expert after expert on the same panel.
  markNextWeights(&*std::prev(b.getInsertionPoint()),
                  /*followingPanels=*/false);
}

/// `into[row_tokens[r], cols] += row_weights[r] * block[r - blockStart, :]`
/// for the block's rows `r` whose token is one of `into`'s rows (padding
/// rows have none); `cols` are the block's columns of `into`.
void emitCombineRows(ImplicitLocOpBuilder &b, Value block, Value blockStart,
                     Value rowTokens, Value rowWeights, Value into,
                     Value first, OpFoldResult width) {
  KernelEmitter e(b);
  Value c0 = e.index(0);
  Value tokens = e.dim(into, 0);
  Type ct = cast<MemRefType>(block.getType()).getElementType();
  Type outType = cast<MemRefType>(into.getType()).getElementType();
  MLIRContext *ctx = b.getContext();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(1, ctx);
  e.loop(c0, e.dim(block, 0), [&](Value r) {
    Value row = e.addi(blockStart, r);
    Value token = e.toIndex(e.load(rowTokens, row));
    Value isToken =
        e.land(e.cmpi(arith::CmpIPredicate::sge, token, c0),
               e.cmpi(arith::CmpIPredicate::slt, token, tokens));
    e.ifThen(isToken, [&] {
      Value weight = e.castFloat(e.load(rowWeights, row), ct);
      Value from = sliceLeading(b, block, r);
      Value to = sliceRange(b, sliceLeading(b, into, token), first, width);
      linalg::GenericOp::create(
          b, ValueRange{from}, ValueRange{to},
          ArrayRef<AffineMap>{identity, identity},
          {utils::IteratorType::parallel},
          [&](OpBuilder &nested, Location loc, ValueRange args) {
            ImplicitLocOpBuilder nb(loc, nested);
            KernelEmitter ne(nb);
            Value sum = ne.addf(ne.castFloat(args[1], ct),
                                ne.mulf(weight, args[0]));
            linalg::YieldOp::create(nb, ne.castFloat(sum, outType));
          });
    });
  });
}

/// Writes `act(gate) [* linear]` (the expert's activation, rounded to
/// `actType`) into `h` through a linalg.generic over `[m, n]` with the
/// given operands and indexing maps (the last map is `h`'s).
void emitActivationGeneric(ImplicitLocOpBuilder &b, ExpertOp expert,
                           ValueRange ins, ArrayRef<AffineMap> maps, Value h,
                           Type actType) {
  linalg::GenericOp::create(
      b, ins, ValueRange{h}, maps,
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nested, Location loc, ValueRange args) {
        ImplicitLocOpBuilder nb(loc, nested);
        KernelEmitter ne(nb);
        Value linear = ins.size() == 2 ? args[1] : Value();
        linalg::YieldOp::create(
            nb, ne.castFloat(emitActivation(ne, expert, args[0], linear),
                             actType));
      });
}

/// Rounds `acc` into the narrower `out` elementwise.
void emitCastRows(ImplicitLocOpBuilder &b, Value acc, Value out) {
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n;
  bindDims(ctx, m, n);
  Type outType = cast<MemRefType>(out.getType()).getElementType();
  linalg::GenericOp::create(
      b, ValueRange{acc}, ValueRange{out}, indexingMaps({{m, n}, {m, n}}, ctx),
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nested, Location loc, ValueRange args) {
        ImplicitLocOpBuilder nb(loc, nested);
        linalg::YieldOp::create(
            nb, KernelEmitter(nb).castFloat(args[0], outType));
      });
}

struct ExpertOpInterface : StageOpInterface<ExpertOpInterface, ExpertOp> {
  // With the combine fused, the result is `combine_into` accumulated in
  // place (one-shot bufferization copies it first where it is still read
  // elsewhere); otherwise a fresh allocation.
  static bool isCombineInto(Operation *op, OpOperand &operand) {
    auto expert = cast<ExpertOp>(op);
    return expert.combinesRows() &&
           &operand == &expert.getCombineIntoMutable()[0];
  }
  bool bufferizesToMemoryWrite(Operation *op, OpOperand &operand,
                               const AnalysisState &) const {
    return isCombineInto(op, operand);
  }
  AliasingValueList getAliasingValues(Operation *op, OpOperand &operand,
                                      const AnalysisState &) const {
    if (!isCombineInto(op, operand))
      return {};
    return {{op->getResult(0), BufferRelation::Equivalent,
             /*isDefinite=*/true}};
  }
  bool bufferizesToAllocation(Operation *op, Value) const {
    return !cast<ExpertOp>(op).combinesRows();
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto expert = cast<ExpertOp>(op);
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    Value rows = map->lookup(expert.getRows());
    Value offsets = map->lookup(expert.getOffsets());
    // With a gather, `rows` are the tokens and the dispatched rows are
    // `rows[gatherTokens[r]]`.
    Value gatherTokens = bufferOf(*map, expert.getGatherTokens());
    Value fc1 = map->lookup(expert.getFc1());
    Value fc2 = map->lookup(expert.getFc2());
    Value fc1Bias = bufferOf(*map, expert.getFc1Bias());
    Value fc2Bias = bufferOf(*map, expert.getFc2Bias());
    Value fc3 = bufferOf(*map, expert.getFc3());
    Value fc3Bias = bufferOf(*map, expert.getFc3Bias());
    QuantAttr quant = expert.getQuantAttr();
    // fc1, fc2, fc3 with their quantisation operands (null for float
    // weights).
    QuantizedProjection projections[3] = {
        {fc1, bufferOf(*map, expert.getFc1Scales()),
         bufferOf(*map, expert.getFc1ZeroPoints())},
        {fc2, bufferOf(*map, expert.getFc2Scales()),
         bufferOf(*map, expert.getFc2ZeroPoints())},
        {fc3, bufferOf(*map, expert.getFc3Scales()),
         bufferOf(*map, expert.getFc3ZeroPoints())}};

    auto fc1Type = expert.getFc1().getType();
    auto fc2Type = expert.getFc2().getType();
    // Panel-major weights ([E, N / P, K, P], bf16 [E, N / P, K / 2, P, 2])
    // hold N = panels * P columns of K.
    int64_t panelWidth = expert.getPanelWidth().value_or(0);
    int64_t panelSteps =
        panelWidth ? panelStepsOfK(fc2Type.getElementType()) : 1;
    auto outputColumns = [&](RankedTensorType type) {
      int64_t stored = type.getDimSize(1);
      return panelWidth && !ShapedType::isDynamic(stored) ? stored * panelWidth
                                                          : stored;
    };
    int64_t numExperts = fc1Type.getDimSize(0);
    int64_t fc1Rows = outputColumns(fc1Type);
    int64_t pack = quant ? quant.getPackFactor() : 1;
    int64_t inter = fc2Type.getDimSize(2);
    if (!ShapedType::isDynamic(inter))
      inter *= panelSteps;
    if (ShapedType::isDynamic(numExperts) || ShapedType::isDynamic(fc1Rows) ||
        ShapedType::isDynamic(inter))
      return op->emitError("lowering moe.expert needs static weight shapes");
    inter *= pack;
    int64_t hiddenSize = outputColumns(fc2Type);
    // The dequantisation panel and its loops are sized statically.
    if (quant && ShapedType::isDynamic(hiddenSize))
      return op->emitError(
          "lowering a quantised moe.expert needs a static hidden size");

    // 0 for float weights.
    auto bytesPerColumn = [&](int64_t depth, bool gatedPair) -> int64_t {
      return quant ? quantizedBytesPerColumn(quant, depth, gatedPair) : 0;
    };

    Value numRows = e.dim(gatherTokens ? gatherTokens : rows, 0);
    Type rowType = expert.getRows().getType().getElementType();
    ExpertInt8Layouts int8Layouts =
        getExpertInt8Layouts(expert, hiddenSize, inter);
    std::optional<Int8Layout> fc1Int8 = int8Layouts.fc1,
                              fc2Int8 = int8Layouts.fc2;
    // The int8 kernels read fc1's input as codes quantised once per token,
    // through the dispatched rows' tokens (k times fewer rows to quantise,
    // and no [T*k, H] copy).
    Value int8Tokens = fc1Int8 ? gatherTokens : Value();
    if (gatherTokens && quant && !int8Tokens) {
      // The other quantised kernels read rows as they are (and the decode
      // kernel stages them anyway): the gathered rows are copied first.
      FailureOr<Value> gathered = options.createAlloc(
          b, b.getLoc(),
          MemRefType::get({ShapedType::kDynamic, hiddenSize}, rowType),
          {numRows});
      if (failed(gathered))
        return failure();
      emitGatherRows(b, rows, gatherTokens, *gathered);
      rows = *gathered;
      gatherTokens = Value();
    }
    // bf16 rows may give f32 outputs (-moe-decompose-layer's bf16-rows).
    Type resultType = expert.getResult().getType().getElementType();
    Type ct = computeTypeFor(rowType);
    bool combining = expert.combinesRows();
    FailureOr<Value> result =
        combining ? FailureOr<Value>(map->lookup(expert.getCombineInto()))
                  : allocBuffer(b, b.getLoc(), expert.getResult().getType(),
                                numRows, options);
    if (failed(result))
      return failure();

    // Scratch for fc1 (and fc3) outputs and the activation, one row per
    // dispatched row so that experts write disjoint slices.
    auto scratch = [&](int64_t cols) -> FailureOr<Value> {
      return options.createAlloc(
          b, b.getLoc(), MemRefType::get({ShapedType::kDynamic, cols}, ct),
          {numRows});
    };
    FailureOr<Value> fc1Out = scratch(fc1Rows);
    // With bf16 weights the activation is rounded to bf16, as a bf16 model
    // computes it (and as the GPU's tensor-core kernels store it), so that
    // fc2 multiplies bf16 by bf16 (vdpbf16ps where the CPU has it).
    Type weightType = fc2Type.getElementType();
    Type actType = !quant && weightType.isBF16() ? weightType : ct;
    FailureOr<Value> act = options.createAlloc(
        b, b.getLoc(), MemRefType::get({ShapedType::kDynamic, inter}, actType),
        {numRows});
    FailureOr<Value> fc3Out = fc3 ? scratch(inter) : FailureOr<Value>(Value());
    FailureOr<Value> fc2Out = resultType != ct && !combining
                                  ? scratch(hiddenSize)
                                  : FailureOr<Value>(Value());
    if (failed(fc1Out) || failed(act) || failed(fc3Out) || failed(fc2Out))
      return failure();
    // The decode kernel of quantised experts reads each projection's input
    // rows staged (converted, 4-bit columns deinterleaved): all rows at
    // once before each of the two loops, rather than per panel.
    // Experts marked by -moe-int8-activations quantise each projection's
    // input rows to int8 instead, where the int8 kernel takes the
    // projection's layout (fc1's and fc3's depth H, fc2's I).
    // `in`'s rows quantised (with `tokens`, the rows are tokens' and the
    // dispatched rows read them through `tokens`).
    auto stageInt8 = [&](Value in, const std::optional<Int8Layout> &layout,
                         int64_t depth,
                         Value tokens) -> FailureOr<std::optional<Int8Rows>> {
      if (!layout)
        return std::optional<Int8Rows>();
      Value inRows = e.dim(in, 0);
      auto buffer = [&](int64_t cols, Type type) {
        return options.createAlloc(
            b, b.getLoc(), MemRefType::get({ShapedType::kDynamic, cols}, type),
            {inRows});
      };
      FailureOr<Value> codes = buffer(depth, b.getI8Type());
      FailureOr<Value> scales = buffer(layout->blocks, b.getF32Type());
      FailureOr<Value> corrections =
          buffer(layout->units * 16, b.getI32Type());
      if (failed(codes) || failed(scales) || failed(corrections))
        return failure();
      Int8Rows rows{*layout, *codes, *scales, *corrections, tokens};
      emitQuantizeRowsInt8(b, in, *layout, rows);
      return std::optional<Int8Rows>(rows);
    };
    auto sliceInt8Rows = [&](const std::optional<Int8Rows> &all, Value start,
                             Value count) -> std::optional<Int8Rows> {
      if (!all)
        return std::nullopt;
      if (all->tokens) {
        Int8Rows rows = *all;
        rows.tokens = sliceRange(b, all->tokens, start, count);
        return rows;
      }
      return Int8Rows{all->layout, sliceRows(b, all->codes, start, count),
                      sliceRows(b, all->scales, start, count),
                      sliceRows(b, all->corrections, start, count)};
    };
    bool staging = quant && decodeNeedsStaging(quant, rowType, ct) &&
                   !(fc1Int8 && fc2Int8);
    FailureOr<Value> staged = staging ? scratch(std::max(hiddenSize, inter))
                                      : FailureOr<Value>(Value());
    if (failed(staged))
      return failure();
    auto stage = [&](Value in, int64_t depth,
                     const std::optional<Int8Layout> &int8) -> Value {
      if (!quant || int8)
        return Value();
      if (!staging)
        return in;
      Value view = sliceBlock(b, *staged, b.getIndexAttr(0), numRows,
                              b.getIndexAttr(0), b.getIndexAttr(depth));
      emitStageRows(b, in, quant, depth, view);
      return view;
    };

    bool swiglu = expert.getActivation() == Activation::swiglu;
    SwigluFusion fusion = expert.getSwigluFusion();
    Value lastOffset = e.load(offsets, e.index(numExperts));

    MLIRContext *ctx = b.getContext();
    AffineExpr m, n;
    bindDims(ctx, m, n);
    // Two parallel loops over panels x experts, one for fc1 (and fc3) with
    // the activation on the panel just computed, one for fc2, instead of a
    // parallel loop per GEMM per expert. A layer with many small experts
    // (decode, or 64-128 experts at T = 16-64) otherwise pays a worker-pool
    // dispatch and barrier for every projection of every active expert.
    // Expert x's weight for output columns [first, first + count): rows of
    // an out-major weight, or whole panels of a panel-major one.
    auto weightRows = [&](int which, Value x, Value first,
                          OpFoldResult count) -> Value {
      Value weight = sliceLeading(b, projections[which].weights, x);
      auto type = cast<MemRefType>(weight.getType());
      OpFoldResult depth =
          type.isDynamicDim(1)
              ? OpFoldResult(e.dim(weight, 1))
              : OpFoldResult(b.getIndexAttr(type.getDimSize(1)));
      if (!panelWidth)
        return sliceBlock(b, weight, first, count, b.getIndexAttr(0), depth);
      Value width = e.index(panelWidth);
      OpFoldResult panels =
          isa<Attribute>(count)
              ? OpFoldResult(
                    b.getIndexAttr(*getConstantIntValue(count) / panelWidth))
              : OpFoldResult(
                    arith::DivUIOp::create(b, cast<Value>(count), width)
                        .getResult());
      // Panels [first / P, + count / P), each whole ([K, P], or bf16's
      // [K / 2, P, 2]).
      SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
      offsets[0] = arith::DivUIOp::create(b, first, width).getResult();
      SmallVector<OpFoldResult> sizes = {panels, depth};
      for (int64_t d = 2; d < type.getRank(); ++d)
        sizes.push_back(b.getIndexAttr(type.getDimSize(d)));
      return memref::SubViewOp::create(
                 b, weight, offsets, sizes,
                 SmallVector<OpFoldResult>(type.getRank(), b.getIndexAttr(1)))
          .getResult();
    };
    // Columns [first, first + count) of projection `which`'s output for
    // expert x's rows `in` (`stagedIn` for the quantised decode kernel; or
    // with `inTokens` the rows of `in` those tokens name), into `c` (those
    // rows and columns); `depth` is K.
    auto projectPanel = [&](int which, Value c, Value bias, Value in,
                            Value inTokens, Value stagedIn,
                            const std::optional<Int8Rows> &int8In, Value x,
                            Value first, OpFoldResult count, int64_t depth) {
      Value panelBias =
          bias ? sliceRange(b, sliceLeading(b, bias, x), first, count)
               : Value();
      if (quant) {
        emitQuantizedPanel(b, in, stagedIn, int8In ? &*int8In : nullptr,
                           projections[which], quant, x, first, count, depth,
                           panelBias, c);
        return c;
      }
      emitInitRows(b, c, panelBias);
      Value weight = weightRows(which, x, first, count);
      linalg::GenericOp gemm =
          inTokens ? emitGatheredMatmulTransposedB(b, in, inTokens, weight, c,
                                                   panelWidth)
                   : emitMatmulTransposedB(b, in, weight, c, panelWidth);
      gemm->setAttr(kExpertGemmAttrName, b.getUnitAttr());
      return c;
    };
    int64_t fc1BytesPerColumn =
        bytesPerColumn(hiddenSize, /*gatedPair=*/swiglu || fc3);
    int64_t fc2BytesPerColumn = bytesPerColumn(inter, /*gatedPair=*/false);
    PanelSplit fc1Split = splitIntoPanels(inter, fc1BytesPerColumn);
    PanelSplit hiddenSplit = splitIntoPanels(hiddenSize, fc2BytesPerColumn);
    // Every column panel of the schedule must be whole weight panels
    // (-moe-pack-expert-weights packs only weights for which they are).
    if (panelWidth &&
        (!expertColumnsFitPanels(inter, panelWidth, fc1BytesPerColumn) ||
         !expertColumnsFitPanels(hiddenSize, panelWidth, fc2BytesPerColumn)))
      return op->emitError()
             << "panel-major weights of width " << panelWidth
             << " need the CPU schedule's column panels of I = " << inter
             << " and H = " << hiddenSize << " to be whole weight panels";
    // Panel-major quantised weights are read by the int8 panel kernel
    // alone, 16 columns (a vpdpbusd's lanes) to a load.
    if (panelWidth && quant && (!fc1Int8 || !fc2Int8 || panelWidth % 16))
      return op->emitError()
             << "panel-major quantised weights need the int8 kernels "
                "(moe.int8_activations, no zero points, f32 rows and K of "
                "whole 64-byte steps) and a panel width that is a multiple "
                "of 16, got "
             << panelWidth;
    if (panelWidth && quant)
      for (QuantizedProjection &projection : projections)
        projection.panelWidth = panelWidth;
    Value stagedRows = stage(rows, hiddenSize, fc1Int8);
    FailureOr<std::optional<Int8Rows>> int8Rows =
        stageInt8(rows, fc1Int8, hiddenSize, int8Tokens);
    if (failed(int8Rows))
      return failure();
    forEachExpertPanel(
        b, offsets, numExperts, numRows, e.index(inter), fc1Split,
        [&](Value x, Value start, Value count, Value first,
            OpFoldResult width) {
          // The expert's rows, or all tokens and the expert's rows' tokens.
          Value in = gatherTokens ? rows : sliceRows(b, rows, start, count);
          Value inTokens = gatherTokens
                               ? sliceRange(b, gatherTokens, start, count)
                               : Value();
          Value stagedIn =
              stagedRows ? sliceRows(b, stagedRows, start, count) : Value();
          std::optional<Int8Rows> int8In =
              sliceInt8Rows(*int8Rows, start, count);
          auto fc1Panel = [&](int which, Value scratch, Value bias,
                              Value panelFirst, OpFoldResult panelWidth) {
            return projectPanel(
                which,
                sliceBlock(b, scratch, start, count, panelFirst, panelWidth),
                bias, in, inTokens, stagedIn, int8In, x, panelFirst,
                panelWidth, hiddenSize);
          };
          // The activation's operands and indexing maps (h's last): the
          // gate product and, for gated activations, the linear one: fc1's
          // second half (concatenated SwiGLU) or fc3's output. Interleaved
          // SwiGLU reads both from one fc1 panel of 2 * width columns
          // through strided index maps.
          SmallVector<Value> ins;
          SmallVector<AffineMap> maps;
          if (swiglu && fusion == SwigluFusion::interleaved) {
            OpFoldResult both =
                isa<Attribute>(width)
                    ? OpFoldResult(
                          b.getIndexAttr(2 * *getConstantIntValue(width)))
                    : OpFoldResult(e.muli(cast<Value>(width), e.index(2)));
            Value gateAndLinear =
                fc1Panel(0, *fc1Out, fc1Bias, e.muli(first, e.index(2)), both);
            ins = {gateAndLinear, gateAndLinear};
            maps = indexingMaps({{m, n * 2}, {m, n * 2 + 1}, {m, n}}, ctx);
          } else {
            ins = {fc1Panel(0, *fc1Out, fc1Bias, first, width)};
            if (swiglu && fusion == SwigluFusion::concatenated)
              ins.push_back(fc1Panel(0, *fc1Out, fc1Bias,
                                     e.addi(first, e.index(inter)), width));
            else if (fc3)
              ins.push_back(fc1Panel(2, *fc3Out, fc3Bias, first, width));
            maps.assign(ins.size() + 1,
                        AffineMap::getMultiDimIdentityMap(2, ctx));
          }
          emitActivationGeneric(b, expert, ins, maps,
                                sliceBlock(b, *act, start, count, first, width),
                                actType);
        });
    Value hidden = ShapedType::isDynamic(hiddenSize) ? e.dim(*result, 1)
                                                     : e.index(hiddenSize);
    Value stagedAct = stage(*act, inter, fc2Int8);
    FailureOr<std::optional<Int8Rows>> int8Act =
        stageInt8(*act, fc2Int8, inter, Value());
    if (failed(int8Act))
      return failure();
    // y = fc2 h + b2 for expert x's rows [start, start + count), columns
    // [first, first + width), into `c`.
    auto secondProjection = [&](Value c, Value x, Value start, Value count,
                                Value first, OpFoldResult width) {
      return projectPanel(
          1, c, fc2Bias, sliceRows(b, *act, start, count), Value(),
          stagedAct ? sliceRows(b, stagedAct, start, count) : Value(),
          sliceInt8Rows(*int8Act, start, count), x, first, width, inter);
    };
    if (combining) {
      Value rowTokens = map->lookup(expert.getRowTokens());
      Value rowWeights = map->lookup(expert.getRowWeights());
      // With few rows per expert, each panel's block of rows goes through a
      // scratch of the panel's own, straight into the tokens' rows of the
      // result. With many, a panel-major GEMM would reread every expert's
      // rows from L3 for every panel (7% slower at T = 512 on Qwen3 / 2,
      // 128 experts): experts stay outermost for the GEMM, into rows of
      // their own, and one parallel pass over panels adds the rows to
      // their tokens (still in row order, by one thread per panel).
      e.ifThenElse(
          isPanelMajor(e, numRows, numExperts),
          [&] {
            Value block;
            forEachPanelOfEveryExpert(
                b, offsets, numExperts, numRows, hidden, hiddenSplit,
                [&] {
                  block = memref::AllocOp::create(
                      b,
                      MemRefType::get({kCombineRowBlock, hiddenSplit.width},
                                      ct),
                      ValueRange{}, b.getI64IntegerAttr(64));
                },
                [&](Value x, Value start, Value count, Value first,
                    OpFoldResult width) {
                  Value c = sliceBlock(b, block, b.getIndexAttr(0), count,
                                       b.getIndexAttr(0), width);
                  secondProjection(c, x, start, count, first, width);
                  emitCombineRows(b, c, start, rowTokens, rowWeights, *result,
                                  first, width);
                });
          },
          [&] {
            SmallVector<Value> sizes = {numRows};
            if (ShapedType::isDynamic(hiddenSize))
              sizes.push_back(hidden);
            Value expertRows = memref::AllocOp::create(
                b, MemRefType::get({ShapedType::kDynamic, hiddenSize}, ct),
                sizes, b.getI64IntegerAttr(64));
            forEachExpertPanel(
                b, offsets, numExperts, numRows, hidden, hiddenSplit,
                [&](Value x, Value start, Value count, Value first,
                    OpFoldResult width) {
                  secondProjection(
                      sliceBlock(b, expertRows, start, count, first, width), x,
                      start, count, first, width);
                },
                /*expertMajor=*/true);
            Value dispatched = clampRowOffset(e, lastOffset, numRows);
            forEachPanel(
                b, hidden, hiddenSplit, [&](Value first, OpFoldResult width) {
                  emitCombineRows(b,
                                  sliceBlock(b, expertRows, b.getIndexAttr(0),
                                             dispatched, first, width),
                                  e.index(0), rowTokens, rowWeights, *result,
                                  first, width);
                });
          });
    } else {
      forEachExpertPanel(
          b, offsets, numExperts, numRows, hidden, hiddenSplit,
          [&](Value x, Value start, Value count, Value first,
              OpFoldResult width) {
            // Accumulated in the compute type; narrower outputs go through
            // a compute-type scratch and are rounded once at the end.
            Value acc = secondProjection(
                sliceBlock(b, *fc2Out ? *fc2Out : *result, start, count, first,
                           width),
                x, start, count, first, width);
            if (*fc2Out)
              emitCastRows(b, acc,
                           sliceBlock(b, *result, start, count, first, width));
          });
      // Padding rows produce zeros.
      Value firstPad = clampRowOffset(e, lastOffset, numRows);
      Value padding =
          sliceRows(b, *result, firstPad, e.subi(numRows, firstPad));
      linalg::FillOp::create(b, ValueRange{e.f(resultType, 0.0)},
                             ValueRange{padding});
    }

    // The scratch buffers are freed by the buffer-deallocation pipeline,
    // which rejects hand-placed deallocations.
    replaceOpWithBufferizedValues(rewriter, op, {*result});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

struct CombineOpInterface : StageOpInterface<CombineOpInterface, CombineOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto combine = cast<CombineOp>(op);
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    Value expertOut = map->lookup(combine.getExpertOutput());
    Value weights = map->lookup(combine.getWeights());
    Value ids = map->lookup(combine.getIds());
    Value slotRows = map->lookup(combine.getSlotRows());
    Value input = bufferOf(*map, combine.getInput());
    Value shared = bufferOf(*map, combine.getShared());
    Value sharedGate = bufferOf(*map, combine.getSharedGate());
    Value constants = bufferOf(*map, combine.getConstants());
    Value constantGates = bufferOf(*map, combine.getConstantGates());

    int64_t k = combine.getWeights().getType().getDimSize(1);
    int64_t hiddenSize = combine.getResult().getType().getDimSize(1);
    if (ShapedType::isDynamic(k) || ShapedType::isDynamic(hiddenSize))
      return op->emitError("lowering moe.combine needs static k and hidden size");
    Value tokens = e.dim(weights, 0);
    Value numRows = e.dim(expertOut, 0);
    FailureOr<Value> result = allocBuffer(
        b, b.getLoc(), combine.getResult().getType(), tokens,
        options);
    if (failed(result))
      return failure();

    Type outType = combine.getResult().getType().getElementType();
    Type ct = computeTypeFor(outType);
    Value acc = memref::AllocaOp::create(b, MemRefType::get({hiddenSize}, ct));
    int64_t numExperts = combine.getNumExperts();
    Value c0 = e.index(0), cH = e.index(hiddenSize);
    Value cE = e.index(numExperts);
    Value zero = e.f(ct, 0.0);
    auto value = [&](Value buffer, ValueRange idx) {
      return e.castFloat(e.load(buffer, idx), ct);
    };
    // acc[h] += scale * row(h)
    auto accumulate = [&](Value scale, function_ref<Value(Value)> row) {
      e.loop(c0, cH, [&](Value h) {
        e.store(e.addf(e.load(acc, h), e.mulf(scale, row(h))), acc, h);
      });
    };

    SmallVector<ZeroExpertKind> zeroKinds = combine.getZeroExpertKinds();

    e.loop(c0, tokens, [&](Value t) {
      e.loop(c0, cH, [&](Value h) { e.store(zero, acc, h); });
      e.loop(c0, e.index(k), [&](Value j) {
        Value id = e.toIndex(e.load(ids, {t, j}));
        Value w = value(weights, {t, j});
        Value row = e.toIndex(e.load(slotRows, {t, j}));
        Value routed = e.land(
            e.land(e.cmpi(arith::CmpIPredicate::sge, id, c0),
                   e.cmpi(arith::CmpIPredicate::slt, id, cE)),
            e.land(e.cmpi(arith::CmpIPredicate::sge, row, c0),
                   e.cmpi(arith::CmpIPredicate::slt, row, numRows)));
        e.ifThen(routed, [&] {
          accumulate(w, [&](Value h) { return value(expertOut, {row, h}); });
        });
        if (combine.getDroppedPassThrough()) {
          // A routed slot that dispatch dropped (row -1) keeps the token.
          Value dropped = e.land(
              e.land(e.cmpi(arith::CmpIPredicate::sge, id, c0),
                     e.cmpi(arith::CmpIPredicate::slt, id, cE)),
              e.cmpi(arith::CmpIPredicate::slt, row, c0));
          e.ifThen(dropped, [&] {
            accumulate(w, [&](Value h) { return value(input, {t, h}); });
          });
        }
        int64_t constantIndex = 0;
        for (auto [z, kind] : llvm::enumerate(zeroKinds)) {
          if (kind == ZeroExpertKind::zero)
            continue;
          Value isThis = e.cmpi(arith::CmpIPredicate::eq, id,
                                e.index(numExperts + z));
          int64_t c = constantIndex;
          if (kind == ZeroExpertKind::constant)
            ++constantIndex;
          e.ifThen(isThis, [&] {
            if (kind == ZeroExpertKind::copy) {
              accumulate(w, [&](Value h) { return value(input, {t, h}); });
              return;
            }
            // MoE++ constant expert: (a1, a2) = softmax(Wc x).
            Value cc = e.index(c);
            auto gateLogit = [&](int64_t which) {
              return e.sum(c0, cH, zero, [&](Value h) {
                return e.mulf(value(constantGates, {cc, e.index(which), h}),
                              value(input, {t, h}));
              });
            };
            Value g0 = gateLogit(0), g1 = gateLogit(1);
            Value max = arith::MaximumFOp::create(b, g0, g1);
            Value p0 = e.exp(e.subf(g0, max)), p1 = e.exp(e.subf(g1, max));
            Value total = e.addf(p0, p1);
            Value a1 = e.divf(p0, total), a2 = e.divf(p1, total);
            accumulate(w, [&](Value h) {
              return e.addf(e.mulf(a1, value(input, {t, h})),
                            e.mulf(a2, value(constants, {cc, h})));
            });
          });
        }
      });
      if (shared) {
        Value gate = e.f(ct, 1.0);
        if (sharedGate)
          gate = e.sigmoid(e.sum(c0, cH, zero, [&](Value h) {
            return e.mulf(value(sharedGate, {h}), value(input, {t, h}));
          }));
        accumulate(gate, [&](Value h) { return value(shared, {t, h}); });
      }
      e.loop(c0, cH, [&](Value h) {
        e.store(e.castFloat(e.load(acc, h), outType), *result, {t, h});
      });
    });

    replaceOpWithBufferizedValues(rewriter, op, {*result});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.all_to_all_start / moe.all_to_all_wait
//===----------------------------------------------------------------------===//

/// The runtime function `name` of type `type`, declared in the module of
/// `op` when missing (docs/ExpertParallel.md).
func::FuncOp runtimeFunction(RewriterBase &rewriter, Operation *op,
                             StringRef name, FunctionType type) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(name))
    return existing;
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPointToStart(module.getBody());
  auto func = func::FuncOp::create(rewriter, op->getLoc(), name, type);
  func.setPrivate();
  return func;
}

/// The address of a buffer's first element as an index; runtime calls
/// take raw pointers, so the buffer must be dense and row-major.
FailureOr<Value> denseAddress(ImplicitLocOpBuilder &b, Operation *op,
                              Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  if (!type.getLayout().isIdentity())
    return op->emitError() << "passes raw pointers to the runtime, which "
                              "need dense row-major buffers, got "
                           << type;
  return memref::ExtractAlignedPointerAsIndexOp::create(b, buffer)
      .getResult();
}

/// moe.all_to_all_start becomes moe_rt_comm_all_to_all_v_start on the
/// buffers: `dest` is written in place (its buffer is `pending`), the other
/// operands are only read.
struct AllToAllStartOpInterface
    : public BufferizableOpInterface::ExternalModel<AllToAllStartOpInterface,
                                                    AllToAllStartOp> {
  bool bufferizesToMemoryRead(Operation *op, OpOperand &operand,
                              const AnalysisState &) const {
    return &operand != &cast<AllToAllStartOp>(op).getDestMutable();
  }
  bool bufferizesToMemoryWrite(Operation *op, OpOperand &operand,
                               const AnalysisState &) const {
    return &operand == &cast<AllToAllStartOp>(op).getDestMutable();
  }
  AliasingValueList getAliasingValues(Operation *op, OpOperand &operand,
                                      const AnalysisState &) const {
    auto start = cast<AllToAllStartOp>(op);
    if (&operand != &start.getDestMutable())
      return {};
    return {{start.getPending(), BufferRelation::Equivalent}};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto start = cast<AllToAllStartOp>(op);
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    SmallVector<Value> args;
    auto grid = SymbolTable::lookupNearestSymbolFrom<shard::GridOp>(
        op, start.getGridAttr());
    args.push_back(arith::ConstantIntOp::create(b, grid.getShape()[0], 64));
    for (Value operand : {start.getSend(), start.getSendCounts(),
                          start.getDest(), start.getRecvCounts()}) {
      FailureOr<Value> address = denseAddress(b, op, map->lookup(operand));
      if (failed(address))
        return failure();
      // The runtime reads the counts on the host whatever the target
      // (docs/ExpertParallel.md); the rows may live on a device.
      if (operand != start.getSend() && operand != start.getDest())
        address->getDefiningOp()->setAttr(MoEDialect::getHostAddressAttrName(),
                                          b.getUnitAttr());
      args.push_back(*address);
    }
    // A unit is one row: everything after dimension 0.
    auto sendType = cast<RankedTensorType>(start.getSend().getType());
    int64_t unitBytes = llvm::divideCeil(sendType.getElementTypeBitWidth(), 8);
    for (int64_t d = 1; d < sendType.getRank(); ++d)
      unitBytes *= sendType.getDimSize(d);
    args.push_back(arith::ConstantIntOp::create(b, unitBytes, 64));

    Type i64 = b.getI64Type(), index = b.getIndexType();
    func::FuncOp callee = runtimeFunction(
        rewriter, op, "moe_rt_comm_all_to_all_v_start",
        b.getFunctionType({i64, index, index, index, index, i64}, {i64}));
    Value handle = func::CallOp::create(b, callee, args).getResult(0);
    // The handle stays typed in the IR until the LLVM lowering reconciles
    // the casts.
    Value request = UnrealizedConversionCastOp::create(
                        b, TypeRange{start.getRequest().getType()}, handle)
                        .getResult(0);
    replaceOpWithBufferizedValues(rewriter, op,
                                  {request, map->lookup(start.getDest())});
    return success();
  }
};

/// moe.record_routing becomes moe_rt_record_routing(layer, experts, tokens,
/// k, ids), or moe_rt_record_predicted_routing for a prediction, on the
/// ids' buffer, which it only reads (as a stage op reads its operands; it
/// has no results).
struct RecordRoutingOpInterface
    : StageOpInterface<RecordRoutingOpInterface, RecordRoutingOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto record = cast<RecordRoutingOp>(op);
    FailureOr<Value> ids = getBuffer(rewriter, record.getIds(), options, state);
    if (failed(ids))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    FailureOr<Value> address = denseAddress(b, op, *ids);
    if (failed(address))
      return failure();
    Type i64 = b.getI64Type(), index = b.getIndexType();
    func::FuncOp callee = runtimeFunction(
        rewriter, op,
        record.getPredicted() ? "moe_rt_record_predicted_routing"
                              : "moe_rt_record_routing",
        b.getFunctionType({i64, i64, index, index, index}, {}));
    func::CallOp::create(
        b, callee,
        ValueRange{arith::ConstantIntOp::create(b, record.getLayer(), 64),
                   arith::ConstantIntOp::create(b, record.getNumExperts(), 64),
                   e.dim(*ids, 0), e.dim(*ids, 1), *address});
    rewriter.eraseOp(op);
    return success();
  }
};

/// moe.prefetch_experts becomes one moe_rt_prefetch_experts(layer,
/// predicted, experts, tokens, k, ids, weight, expert bytes) per weight, on
/// buffers it only reads.
struct PrefetchExpertsOpInterface
    : StageOpInterface<PrefetchExpertsOpInterface, PrefetchExpertsOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto prefetch = cast<PrefetchExpertsOp>(op);
    FailureOr<IRMapping> map = mapOperandBuffers(rewriter, op, options, state);
    if (failed(map))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    KernelEmitter e(b);
    Value ids = map->lookup(prefetch.getIds());
    FailureOr<Value> idsAddress = denseAddress(b, op, ids);
    if (failed(idsAddress))
      return failure();
    Type i64 = b.getI64Type(), index = b.getIndexType();
    func::FuncOp callee = runtimeFunction(
        rewriter, op, "moe_rt_prefetch_experts",
        b.getFunctionType({i64, i64, i64, index, index, index, index, i64},
                          {}));
    Value layer = arith::ConstantIntOp::create(b, prefetch.getLayer(), 64);
    Value predicted =
        arith::ConstantIntOp::create(b, prefetch.getPredicted() ? 1 : 0, 64);
    Value tokens = e.dim(ids, 0), k = e.dim(ids, 1);
    for (Value weight : prefetch.getWeights()) {
      auto type = cast<RankedTensorType>(weight.getType());
      FailureOr<Value> address = denseAddress(b, op, map->lookup(weight));
      if (failed(address))
        return failure();
      int64_t expertBytes = type.getNumElements() / type.getDimSize(0) *
                            (type.getElementTypeBitWidth() / 8);
      func::CallOp::create(
          b, callee,
          ValueRange{layer, predicted,
                     arith::ConstantIntOp::create(b, type.getDimSize(0), 64),
                     tokens, k, *idsAddress, *address,
                     arith::ConstantIntOp::create(b, expertBytes, 64)});
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// moe.all_to_all_wait becomes moe_rt_comm_wait; its result is the pending
/// buffer, now filled.
struct AllToAllWaitOpInterface
    : public BufferizableOpInterface::ExternalModel<AllToAllWaitOpInterface,
                                                    AllToAllWaitOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *op, OpOperand &operand,
                               const AnalysisState &) const {
    return &operand == &cast<AllToAllWaitOp>(op).getPendingMutable();
  }
  AliasingValueList getAliasingValues(Operation *op, OpOperand &operand,
                                      const AnalysisState &) const {
    auto wait = cast<AllToAllWaitOp>(op);
    if (&operand != &wait.getPendingMutable())
      return {};
    return {{wait.getResult(), BufferRelation::Equivalent}};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto wait = cast<AllToAllWaitOp>(op);
    FailureOr<Value> pending =
        getBuffer(rewriter, wait.getPending(), options, state);
    if (failed(pending))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), rewriter);
    Type i64 = b.getI64Type();
    Value handle =
        UnrealizedConversionCastOp::create(b, TypeRange{i64},
                                           wait.getRequest())
            .getResult(0);
    func::FuncOp callee = runtimeFunction(rewriter, op, "moe_rt_comm_wait",
                                          b.getFunctionType({i64}, {}));
    func::CallOp::create(b, callee, ValueRange{handle});
    replaceOpWithBufferizedValues(rewriter, op, {*pending});
    return success();
  }
};

} // namespace

void mlir::moe::registerBufferizableOpInterfaceExternalModels(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, MoEDialect *) {
    RouteOp::attachInterface<RouteOpInterface>(*ctx);
    DispatchOp::attachInterface<DispatchOpInterface>(*ctx);
    ExpertOp::attachInterface<ExpertOpInterface>(*ctx);
    CombineOp::attachInterface<CombineOpInterface>(*ctx);
    AllToAllStartOp::attachInterface<AllToAllStartOpInterface>(*ctx);
    RecordRoutingOp::attachInterface<RecordRoutingOpInterface>(*ctx);
    PrefetchExpertsOp::attachInterface<PrefetchExpertsOpInterface>(*ctx);
    AllToAllWaitOp::attachInterface<AllToAllWaitOpInterface>(*ctx);
    // Dialects whose ops bufferization creates beyond the ones one-shot
    // bufferize loads itself (the quantised expert unpacks bytes as
    // vectors; the int8 decode kernel calls vpdpbusd as an LLVM
    // intrinsic).
    ctx->loadDialect<arith::ArithDialect, func::FuncDialect,
                     linalg::LinalgDialect, LLVM::LLVMDialect,
                     math::MathDialect, scf::SCFDialect,
                     vector::VectorDialect>();
  });
}
