//===- FuseAttention.cpp - attention computed one block of rows at a time --===//
//
// softmax(Q K^T * scale + mask) V, as exporters spell it, is a chain of
// linalg ops over the [batch, heads, queries, keys] score tensor: the QK^T
// contraction, the scale and mask, a row max, the shifted exponentials, a
// row sum, the division, and the contraction with V. Run op by op, every
// score is written to memory and read back four times; for long sequences
// the score tensor is far larger than the caches. Here the PV contraction
// is tiled along the score rows it reads (one (batch, head) and a block of
// queries per tile, in an scf.forall) and the chain that produces those
// rows is fused into the tile, so that each tile computes its block of
// rows end to end in a [rows, keys] buffer that stays in cache. Only ops
// indexed like the scores (or their per-row reductions) are fused: Q, K, V
// and the mask are read as slices, never recomputed per tile.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/TilingInterface.h"
#include "mlir/Transforms/CSE.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEATTENTION
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Whether `op` is a contraction `out += a * b` with one reduction loop,
/// the last one.
bool isContraction(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 1 ||
      op.getIteratorTypesArray().back() != utils::IteratorType::reduction)
    return false;
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getOperand(0).getDefiningOp<arith::AddFOp>();
  return add && add.getLhs() == body.getArgument(2) &&
         add.getRhs().getDefiningOp<arith::MulFOp>();
}

/// The ops computing the scores `p` that `consumer` contracts, when they
/// form an attention softmax: linalg ops reached from `p` through operands
/// shaped like the scores or like their rows (the scores without the last
/// dimension), among them a row reduction and, at the start, the QK^T
/// contraction. Empty otherwise.
llvm::SetVector<Operation *> scoreChain(Value p) {
  auto scoresType = dyn_cast<RankedTensorType>(p.getType());
  if (!scoresType || scoresType.getRank() < 2)
    return {};
  // Shapes, not types: a half-precision model's chain mixes f32 sums
  // (-moe-widen-half-accumulators) with f16/bf16 scores.
  ArrayRef<int64_t> scoresShape = scoresType.getShape();
  ArrayRef<int64_t> rowsShape = scoresShape.drop_back();
  auto shaped = [](Value v, ArrayRef<int64_t> shape) {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    return type && type.getShape() == shape;
  };
  llvm::SetVector<Operation *> chain;
  SmallVector<Value> worklist{p};
  bool hasRowReduction = false, hasScoreContraction = false;
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    Operation *producer = value.getDefiningOp();
    if (!producer || !isa<linalg::GenericOp, linalg::FillOp>(producer) ||
        !chain.insert(producer))
      continue;
    if (auto generic = dyn_cast<linalg::GenericOp>(producer)) {
      if (isContraction(generic) && shaped(value, scoresShape)) {
        // QK^T: its inputs (Q, K) are read as slices; its init is fused.
        hasScoreContraction = true;
        worklist.push_back(generic.getDpsInits()[0]);
        continue;
      }
      if (generic.getNumReductionLoops() == 1 && shaped(value, rowsShape))
        hasRowReduction = true;
      else if (generic.getNumReductionLoops() != 0)
        return {};
    }
    for (Value operand : producer->getOperands())
      if (shaped(operand, scoresShape) || shaped(operand, rowsShape))
        worklist.push_back(operand);
  }
  if (!hasRowReduction || !hasScoreContraction)
    return {};
  return chain;
}

//===----------------------------------------------------------------------===//
// Masked keys trimmed from a tile
//===----------------------------------------------------------------------===//

/// Mask values at or below this hide their key: `finfo.min` and `-inf`, as
/// exporters write them. Added to any score of a sane model, they leave an
/// exponent far below the smallest float's, so a hidden key's probability
/// is 0 whenever its row has a visible key.
constexpr double kHiddenKeyBound = -1e30;
/// The same for an f16 mask, whose `finfo.min` is -65504: exp of it (or
/// of it plus a sane score, which f16 rounds back to it) is 0 in f32 and
/// in f16.
constexpr double kHiddenKeyBoundF16 = -65504.0;
/// Keys per step of the mask scan (one 512-bit vector of f32), and the
/// granularity of the kept range.
constexpr int64_t kKeyChunk = 16;

/// Where the keys are in the values of a tile: for each tensor computed
/// in the tile or sliced into it, the dimension indexing the keys, or -1.
struct KeyDims {
  DenseMap<Value, int64_t> dim;
  /// The linalg ops of the chain and the loop of each that runs over the
  /// keys (none for ops on rows only).
  SmallVector<std::pair<linalg::LinalgOp, std::optional<unsigned>>> ops;
  /// Slices of tensors defined outside the tile, and empty tensors of the
  /// tile, with a key dimension.
  llvm::SetVector<tensor::ExtractSliceOp> slices;
  llvm::SetVector<tensor::EmptyOp> empties;
  /// Their number.
  OpFoldResult extent;

  /// The key dimension of `value`, -1 for none or unknown.
  int64_t of(Value value) const {
    auto it = dim.find(value);
    return it == dim.end() ? -1 : it->second;
  }
};

/// Follows the keys from the P V contraction `pv` (its reduction loop)
/// back through the ops of `tile`: every tensor's key dimension, from the
/// indexing maps. Fails where the keys are indexed other than by a plain
/// loop, where tensors with keys come from anything but the chain's linalg
/// ops, empty tensors and slices of outside tensors, or where their
/// extents differ.
FailureOr<KeyDims> findKeyDims(scf::ForallOp tile, linalg::GenericOp pv) {
  KeyDims keys;
  Region &body = tile.getRegion();
  auto setDim = [&](Value v, int64_t d) -> LogicalResult {
    auto [it, inserted] = keys.dim.try_emplace(v, d);
    return success(inserted || it->second == d);
  };
  SmallVector<std::pair<linalg::LinalgOp, std::optional<unsigned>>> worklist{
      {cast<linalg::LinalgOp>(pv.getOperation()), pv.getNumLoops() - 1}};
  DenseMap<Operation *, std::optional<unsigned>> visited;
  while (!worklist.empty()) {
    auto [op, loop] = worklist.pop_back_val();
    if (auto [it, inserted] = visited.try_emplace(op, loop); !inserted) {
      // Reached again: through the same loop over the keys.
      if (it->second != loop)
        return failure();
      continue;
    }
    keys.ops.push_back({op, loop});
    for (OpOperand &operand : op->getOpOperands()) {
      int64_t d = -1;
      if (loop) {
        AffineMap map = op.getMatchingIndexingMap(&operand);
        for (auto [i, expr] : llvm::enumerate(map.getResults())) {
          if (auto dimExpr = dyn_cast<AffineDimExpr>(expr)) {
            if (dimExpr.getPosition() == *loop)
              d = i;
          } else if (expr.isFunctionOfDim(*loop)) {
            return failure();
          }
        }
      }
      Value value = operand.get();
      if (failed(setDim(value, d)))
        return failure();
      if (op.isDpsInit(&operand) &&
          failed(setDim(op.getTiedOpResult(&operand), d)))
        return failure();
      Operation *producer = value.getDefiningOp();
      if (!producer || !body.isAncestor(producer->getParentRegion())) {
        if (d >= 0)
          return failure();
        continue;
      }
      if (auto linalgProducer = dyn_cast<linalg::LinalgOp>(producer)) {
        // The producer's loop over the keys: the one indexing the keys of
        // its result, or the reduction of a row reduction.
        std::optional<unsigned> producerLoop;
        AffineMap resultMap =
            linalgProducer.getIndexingMapMatchingResult(cast<OpResult>(value));
        if (d >= 0) {
          auto dimExpr = dyn_cast<AffineDimExpr>(resultMap.getResult(d));
          if (!dimExpr)
            return failure();
          producerLoop = dimExpr.getPosition();
        } else if (linalgProducer.getNumReductionLoops() == 1) {
          SmallVector<unsigned> reductions;
          linalgProducer.getReductionDims(reductions);
          producerLoop = reductions.front();
        }
        worklist.push_back({linalgProducer, producerLoop});
        continue;
      }
      if (d < 0)
        continue;
      if (auto empty = dyn_cast<tensor::EmptyOp>(producer)) {
        keys.empties.insert(empty);
        continue;
      }
      auto slice = dyn_cast<tensor::ExtractSliceOp>(producer);
      if (!slice || body.isAncestor(slice.getSource().getParentRegion()) ||
          !isZeroInteger(slice.getMixedOffsets()[d]) ||
          !isOneInteger(slice.getMixedStrides()[d]) ||
          slice.getSourceType().getRank() != slice.getType().getRank())
        return failure();
      keys.slices.insert(slice);
    }
  }
  // Every tensor with keys has the same extent along them, and is used by
  // the chain's ops (or measured) only.
  std::optional<OpFoldResult> extent;
  auto sizeOf = [&](Value value, int64_t d) -> OpFoldResult {
    if (auto slice = value.getDefiningOp<tensor::ExtractSliceOp>())
      return slice.getMixedSizes()[d];
    if (auto empty = value.getDefiningOp<tensor::EmptyOp>())
      return empty.getMixedSizes()[d];
    return {};
  };
  for (auto [value, d] : keys.dim) {
    if (d < 0)
      continue;
    if (OpFoldResult size = sizeOf(value, d)) {
      if (!extent)
        extent = size;
      else if (!isEqualConstantIntOrValue(size, *extent))
        return failure();
    }
    for (Operation *user : value.getUsers())
      if (!isa<tensor::DimOp>(user) && !visited.contains(user))
        return failure();
  }
  if (!extent)
    return failure();
  keys.extent = *extent;
  return keys;
}

/// The additive mask of a tile's chain: a slice of an f32 tensor from
/// outside the tile, with the keys along its last dimension, added to the
/// scores as the last step of an op of the chain.
struct AdditiveMask {
  tensor::ExtractSliceOp slice;
  /// The slice's dimension indexing the tile's rows; -1 when every row
  /// has the same mask (a padding mask).
  int64_t rowDim = -1;
};

/// What a value of a softmax body is, on the way from masked scores to
/// probabilities.
enum class Score { None, Logit, Probability };

/// Whether the ops of the chain after the mask make a hidden key's
/// probability 0: a body may shift a logit by a row value (the max), take
/// its exponential, scale a probability by a row value (the sum), and
/// reduce logits by max and probabilities by sum; P V must read
/// probabilities. `masked` is the result of the masking op.
bool softmaxOf(Value masked, const KeyDims &keys, linalg::GenericOp pv) {
  DenseMap<Value, Score> state{{masked, Score::Logit}};
  SmallVector<Value> worklist{masked};
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    for (OpOperand &use : value.getUses()) {
      auto op = dyn_cast<linalg::GenericOp>(use.getOwner());
      if (!op)
        continue; // tensor.dim
      if (op == pv) {
        if (use.getOperandNumber() != 0 ||
            state.lookup(value) != Score::Probability)
          return false;
        continue;
      }
      Block &body = op.getRegion().front();
      DenseMap<Value, Score> inBody;
      for (OpOperand &operand : op->getOpOperands())
        if (Score s = state.lookup(operand.get()); s != Score::None)
          inBody[body.getArgument(operand.getOperandNumber())] = s;
      auto of = [&](Value v) { return inBody.lookup(v); };
      auto isInit = [&](Value v) {
        auto arg = dyn_cast<BlockArgument>(v);
        return arg && arg.getOwner() == &body &&
               op.isDpsInit(&op->getOpOperand(arg.getArgNumber()));
      };
      for (Operation &inner : body.without_terminator()) {
        Score result = Score::None;
        if (auto exp = dyn_cast<math::ExpOp>(inner)) {
          if (of(exp.getOperand()) == Score::Logit)
            result = Score::Probability;
          else if (of(exp.getOperand()) != Score::None)
            return false;
        } else if (isa<arith::ExtFOp, arith::TruncFOp>(inner)) {
          // A half-precision model's scores, widened and rounded between
          // f32 sums (-moe-widen-half-accumulators).
          result = of(inner.getOperand(0));
        } else if (auto sub = dyn_cast<arith::SubFOp>(inner)) {
          if (of(sub.getRhs()) != Score::None)
            return false;
          result = of(sub.getLhs());
        } else if (isa<arith::MulFOp, arith::DivFOp>(inner)) {
          Score lhs = of(inner.getOperand(0)), rhs = of(inner.getOperand(1));
          if ((lhs != Score::None && rhs != Score::None) ||
              (isa<arith::DivFOp>(inner) && rhs != Score::None) ||
              lhs == Score::Logit || rhs == Score::Logit)
            return false;
          result = lhs != Score::None ? lhs : rhs;
        } else if (isa<arith::MaximumFOp, arith::AddFOp>(inner)) {
          // Reductions into the init: max of logits, sum of probabilities.
          Value x = inner.getOperand(0), acc = inner.getOperand(1);
          if (of(x) == Score::None)
            std::swap(x, acc);
          if (of(x) == Score::None)
            continue;
          Score want =
              isa<arith::MaximumFOp>(inner) ? Score::Logit : Score::Probability;
          if (!isInit(acc) || of(x) != want || op.getNumReductionLoops() != 1)
            return false;
        } else {
          for (Value operand : inner.getOperands())
            if (of(operand) != Score::None)
              return false;
        }
        if (result != Score::None)
          inBody[inner.getResult(0)] = result;
      }
      auto yield = cast<linalg::YieldOp>(body.getTerminator());
      for (auto [yielded, result] :
           llvm::zip(yield.getOperands(), op->getResults())) {
        Score s = of(yielded);
        if (s == Score::None)
          continue;
        if (keys.of(result) < 0)
          return false;
        if (state.try_emplace(result, s).second)
          worklist.push_back(result);
      }
    }
  }
  return true;
}

FailureOr<AdditiveMask> findAdditiveMask(const KeyDims &keys,
                                         linalg::GenericOp pv) {
  std::optional<AdditiveMask> mask;
  for (auto [linalgOp, loop] : keys.ops) {
    auto op = dyn_cast<linalg::GenericOp>(linalgOp.getOperation());
    if (!op || op == pv || !loop || op->getNumResults() != 1)
      continue;
    Block &body = op.getRegion().front();
    auto add = cast<linalg::YieldOp>(body.getTerminator())
                   .getOperand(0)
                   .getDefiningOp<arith::AddFOp>();
    if (!add)
      continue;
    for (Value side : {add.getLhs(), add.getRhs()}) {
      Value other = side == add.getLhs() ? add.getRhs() : add.getLhs();
      auto arg = dyn_cast<BlockArgument>(side);
      if (!arg || arg.getOwner() != &body || other == side ||
          arg.getArgNumber() >= op.getNumDpsInputs())
        continue;
      OpOperand &operand = op->getOpOperand(arg.getArgNumber());
      auto slice = operand.get().getDefiningOp<tensor::ExtractSliceOp>();
      if (!slice || !llvm::is_contained(keys.slices, slice) ||
          !isa<Float32Type, Float16Type, BFloat16Type>(
              slice.getType().getElementType()) ||
          keys.of(slice) != slice.getType().getRank() - 1)
        continue;
      // The rows: the loop of the result's dimension before the keys.
      int64_t resultKeys = keys.of(op->getResult(0));
      AffineMap resultMap = op.getIndexingMapMatchingResult(op->getResult(0));
      if (resultKeys < 1)
        continue;
      auto rowExpr =
          dyn_cast<AffineDimExpr>(resultMap.getResult(resultKeys - 1));
      if (!rowExpr)
        continue;
      AffineMap maskMap = op.getMatchingIndexingMap(&operand);
      AdditiveMask found{slice, -1};
      for (auto [i, expr] : llvm::enumerate(maskMap.getResults()))
        if (expr == rowExpr)
          found.rowDim = i;
      // One mask value per (row, key): the other dimensions are 1.
      bool single = true;
      for (auto [i, size] : llvm::enumerate(slice.getType().getShape()))
        if ((int64_t)i != found.rowDim && (int64_t)i != keys.of(slice) &&
            size != 1)
          single = false;
      if (!single || !softmaxOf(op->getResult(0), keys, pv))
        continue;
      if (mask)
        return failure(); // two masks: leave the tile as it is
      mask = found;
    }
  }
  if (!mask)
    return failure();
  return *mask;
}

/// Emits at `b`'s point the keys [lo, lo + length) that the tile keeps:
/// from the first to the last chunk of 16 keys that some row sees through
/// the mask (reading `mask`, the untrimmed slice). Every key when a row
/// sees none in that range: its softmax is then uniform over all keys, as
/// without the trimming.
std::pair<Value, Value> emitKeptKeys(ImplicitLocOpBuilder &b, Value mask,
                                     int64_t rowDim, Value extent) {
  auto maskType = cast<RankedTensorType>(mask.getType());
  int64_t keyDim = maskType.getRank() - 1;
  auto chunkType = VectorType::get({kKeyChunk}, b.getF32Type());
  // A half-precision mask is read as it is stored and widened.
  auto maskElement = cast<FloatType>(maskType.getElementType());
  auto readType = VectorType::get({kKeyChunk}, maskElement);
  Value c0 = arith::ConstantIndexOp::create(b, 0);
  Value c1 = arith::ConstantIndexOp::create(b, 1);
  Value chunk = arith::ConstantIndexOp::create(b, kKeyChunk);
  double bound = maskElement.isF16() ? kHiddenKeyBoundF16 : kHiddenKeyBound;
  Value hidden = arith::ConstantOp::create(
      b, DenseElementsAttr::get(chunkType, b.getF32FloatAttr(bound)));
  // Lanes past the last key read as hidden.
  Value pad = arith::ConstantOp::create(
      b, b.getFloatAttr(maskElement, -std::numeric_limits<double>::infinity()));
  Value falseValue = arith::ConstantIntOp::create(b, 0, 1);
  Value trueValue = arith::ConstantIntOp::create(b, 1, 1);
  Value rows =
      rowDim >= 0 ? tensor::DimOp::create(b, mask, rowDim).getResult() : c1;
  // Whether row `row` sees a key of chunk `index` (NaN counts as seen).
  auto sees = [&](OpBuilder &nested, Location loc, Value row,
                  Value index) -> Value {
    ImplicitLocOpBuilder ib(loc, nested);
    SmallVector<Value> at(maskType.getRank(), c0);
    if (rowDim >= 0)
      at[rowDim] = row;
    at[keyDim] = arith::MulIOp::create(ib, index, chunk);
    Value keys = vector::TransferReadOp::create(ib, readType, mask, at, pad);
    if (readType != chunkType)
      keys = arith::ExtFOp::create(ib, chunkType, keys);
    Value seen =
        arith::CmpFOp::create(ib, arith::CmpFPredicate::UGT, keys, hidden);
    return vector::ReductionOp::create(ib, vector::CombiningKind::OR, seen);
  };
  auto someRowSees = [&](OpBuilder &nested, Location loc, Value index) {
    auto overRows = scf::ForOp::create(
        nested, loc, c0, rows, c1, ValueRange{falseValue},
        [&](OpBuilder &inner, Location innerLoc, Value row, ValueRange acc) {
          Value seen = arith::OrIOp::create(inner, innerLoc, acc[0],
                                            sees(inner, innerLoc, row, index));
          scf::YieldOp::create(inner, innerLoc, seen);
        });
    return overRows.getResult(0);
  };
  // Moves a chunk index from `from` by `step` while `inRange` holds and
  // `seenAt` does not; returns where it stopped.
  auto scanChunks =
      [&](OpBuilder &nested, Location loc, Value from, int64_t step,
          function_ref<Value(ImplicitLocOpBuilder &, Value)> inRange,
          function_ref<Value(ImplicitLocOpBuilder &, Value)> seenAt) {
        auto loop = scf::WhileOp::create(
            nested, loc, TypeRange{nested.getIndexType()}, ValueRange{from},
            [&](OpBuilder &inner, Location innerLoc, ValueRange args) {
              ImplicitLocOpBuilder ib(innerLoc, inner);
              Value c = args[0];
              Value unseen =
                  arith::XOrIOp::create(ib, seenAt(ib, c), trueValue);
              scf::ConditionOp::create(
                  ib, arith::AndIOp::create(ib, inRange(ib, c), unseen), c);
            },
            [&](OpBuilder &inner, Location innerLoc, ValueRange args) {
              Value next = arith::AddIOp::create(
                  inner, innerLoc, args[0],
                  arith::ConstantIndexOp::create(inner, innerLoc, step));
              scf::YieldOp::create(inner, innerLoc, next);
            });
        return loop.getResult(0);
      };
  // One past the last chunk that a row sees (0 when none does).
  Value chunks = arith::CeilDivUIOp::create(b, extent, chunk);
  auto positive = [&](ImplicitLocOpBuilder &ib, Value c) -> Value {
    return arith::CmpIOp::create(ib, arith::CmpIPredicate::ugt, c, c0);
  };
  Value end = scanChunks(b, b.getLoc(), chunks, -1, positive,
                         [&](ImplicitLocOpBuilder &ib, Value c) {
                           Value previous = arith::SelectOp::create(
                               ib, positive(ib, c),
                               arith::SubIOp::create(ib, c, c1), c0);
                           return someRowSees(ib, ib.getLoc(), previous);
                         });
  // The first chunk that a row sees, from `from` (`end` when none does).
  auto firstSeen = [&](OpBuilder &nested, Location loc, Value from,
                       function_ref<Value(OpBuilder &, Location, Value)> seen) {
    return scanChunks(
        nested, loc, from, 1,
        [&](ImplicitLocOpBuilder &ib, Value c) -> Value {
          return arith::CmpIOp::create(ib, arith::CmpIPredicate::ult, c, end);
        },
        [&](ImplicitLocOpBuilder &ib, Value c) {
          return seen(ib, ib.getLoc(), c);
        });
  };
  Value begin = firstSeen(b, b.getLoc(), c0, someRowSees);
  // Every row sees a key in [begin, end).
  auto everyRow = scf::ForOp::create(
      b, c0, rows, c1, ValueRange{trueValue},
      [&](OpBuilder &nested, Location loc, Value row, ValueRange acc) {
        Value first =
            firstSeen(nested, loc, begin,
                      [&](OpBuilder &inner, Location innerLoc, Value c) {
                        return sees(inner, innerLoc, row, c);
                      });
        Value found = arith::CmpIOp::create(
            nested, loc, arith::CmpIPredicate::ult, first, end);
        scf::YieldOp::create(
            nested, loc,
            ValueRange{arith::AndIOp::create(nested, loc, acc[0], found)});
      });
  Value trim = everyRow.getResult(0);
  Value lo = arith::SelectOp::create(
      b, trim, arith::MulIOp::create(b, begin, chunk), c0);
  Value hi = arith::SelectOp::create(
      b, trim,
      arith::MinUIOp::create(b, arith::MulIOp::create(b, end, chunk), extent),
      extent);
  return {lo, arith::SubIOp::create(b, hi, lo)};
}

/// Restricts the tile of `pv` to the keys that its rows see through an
/// additive mask: the slices of K, V and the mask start at the first kept
/// key and the score buffers hold the kept keys only, so that a causal
/// mask skips the keys after the tile's last row (half of QK^T, softmax
/// and P V over a prompt). Leaves tiles without such a mask, or whose keys
/// it cannot follow, as they are.
void trimMaskedKeys(RewriterBase &rewriter, scf::ForallOp tile,
                    linalg::GenericOp pv) {
  FailureOr<KeyDims> keys = findKeyDims(tile, pv);
  if (failed(keys))
    return;
  FailureOr<AdditiveMask> mask = findAdditiveMask(*keys, pv);
  if (failed(mask))
    return;
  // The scan goes before the first op with keys; the mask's slice is
  // repeated there, whole, for it.
  Block &body = *tile.getBody();
  Operation *first = nullptr;
  for (Operation &op : body) {
    bool keyed = llvm::any_of(op.getResults(),
                              [&](Value v) { return keys->of(v) >= 0; });
    if (keyed || isa<linalg::LinalgOp>(op)) {
      first = &op;
      break;
    }
  }
  if (!first)
    return;
  for (Value operand : mask->slice->getOperands())
    if (Operation *def = operand.getDefiningOp();
        def && def->getBlock() == &body && !def->isBeforeInBlock(first))
      return;
  ImplicitLocOpBuilder b(tile.getLoc(), rewriter);
  b.setInsertionPoint(first);
  Value extent = getValueOrCreateConstantIndexOp(b, b.getLoc(), keys->extent);
  auto scanned = cast<tensor::ExtractSliceOp>(b.clone(*mask->slice));
  auto [lo, length] = emitKeptKeys(b, scanned, mask->rowDim, extent);

  // The slices and empty tensors with keys, narrowed to the kept ones.
  for (tensor::ExtractSliceOp slice : keys->slices) {
    int64_t d = keys->of(slice.getResult());
    SmallVector<OpFoldResult> offsets = slice.getMixedOffsets(),
                              sizes = slice.getMixedSizes();
    offsets[d] = lo;
    sizes[d] = length;
    rewriter.setInsertionPoint(slice);
    auto narrowed = tensor::ExtractSliceOp::create(
        rewriter, slice.getLoc(), slice.getSource(), offsets, sizes,
        slice.getMixedStrides());
    rewriter.replaceOp(slice, narrowed);
  }
  for (tensor::EmptyOp empty : keys->empties) {
    int64_t d = keys->of(empty.getResult());
    SmallVector<OpFoldResult> sizes = empty.getMixedSizes();
    sizes[d] = length;
    rewriter.setInsertionPoint(empty);
    auto narrowed = tensor::EmptyOp::create(rewriter, empty.getLoc(), sizes,
                                            empty.getType().getElementType());
    rewriter.replaceOp(empty, narrowed);
  }
  // The chain's results take their inits' narrowed types, in order.
  for (Operation &op : body)
    if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op))
      for (OpResult result : linalgOp->getResults())
        result.setType(linalgOp.getDpsInitOperand(result.getResultNumber())
                           ->get()
                           .getType());
}

struct FuseAttention
    : public moe::impl::MoEFuseAttentionBase<FuseAttention> {
  using MoEFuseAttentionBase::MoEFuseAttentionBase;

  void runOnOperation() override {
    SmallVector<std::pair<linalg::GenericOp, llvm::SetVector<Operation *>>>
        candidates;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (!isContraction(op) || !op.hasPureTensorSemantics())
        return;
      // The scores are read by rows: P[..., rows, k] with k the reduction.
      AffineMap pMap = op.getIndexingMapsArray()[0];
      if (!pMap.isProjectedPermutation() || pMap.getNumResults() < 2 ||
          pMap.getResults().back() !=
              getAffineDimExpr(op.getNumLoops() - 1, op.getContext()))
        return;
      llvm::SetVector<Operation *> chain = scoreChain(op.getDpsInputs()[0]);
      if (!chain.empty())
        candidates.push_back({op, std::move(chain)});
    });
    IRRewriter rewriter(&getContext());
    SmallVector<LoopLikeOpInterface> tiles;
    for (auto &[op, chain] : candidates) {
      // Tile the loops that index the score rows: every one of size 1 but
      // the last (the queries), which takes `rowTile` rows.
      AffineMap pMap = op.getIndexingMapsArray()[0];
      SmallVector<OpFoldResult> sizes(op.getNumLoops(),
                                      rewriter.getIndexAttr(0));
      for (unsigned i = 0; i + 1 < pMap.getNumResults(); ++i) {
        unsigned loop = cast<AffineDimExpr>(pMap.getResult(i)).getPosition();
        sizes[loop] = rewriter.getIndexAttr(
            i + 2 == pMap.getNumResults() ? rowTile : 1);
      }
      Value init = op.getDpsInits()[0];
      if (Operation *fill = init.getDefiningOp<linalg::FillOp>())
        chain.insert(fill);
      scf::SCFTilingOptions tiling;
      tiling.setTileSizes(sizes);
      tiling.setLoopType(scf::SCFTilingOptions::LoopType::ForallOp);
      scf::SCFTileAndFuseOptions options;
      options.setTilingOptions(tiling);
      llvm::SetVector<Operation *> fusible = chain;
      options.setFusionControlFn(
          [&fusible](tensor::ExtractSliceOp, OpResult producer, bool)
              -> std::optional<scf::SCFTileAndFuseOptions::ControlFnResult> {
            if (!fusible.contains(producer.getOwner()))
              return std::nullopt;
            return scf::SCFTileAndFuseOptions::ControlFnResult{};
          });
      rewriter.setInsertionPoint(op);
      FailureOr<scf::SCFTileAndFuseResult> result =
          scf::tileConsumerAndFuseProducersUsingSCF(
              rewriter, cast<TilingInterface>(op.getOperation()), options);
      if (failed(result))
        continue;
      for (OpResult value : op->getResults())
        if (Value replacement = result->replacements.lookup(value))
          rewriter.replaceAllUsesWith(value, replacement);
      llvm::append_range(tiles, result->loops);
    }
    // The untiled chain is dead now; slices of empty tensors (the tiles'
    // destinations) become tile-sized empty tensors, not views of a full
    // score buffer. The key extents of the fused copies, taken as
    // `tensor.dim` of different tensors of the chain, resolve to the one
    // size they share.
    RewritePatternSet patterns(&getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    memref::populateResolveRankedShapedTypeResultDimsPatterns(patterns);
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
    // A producer read more than once in the tile (the scores by the row
    // max and the shift) was fused once per read: with their extents
    // resolved, the copies compute the same slice from the same operands,
    // and merge. CSE runs on the functions around the tiles, whole: a
    // copy's extent may be a `tensor.dim` in the tile of a tensor measured
    // outside it too.
    llvm::SetVector<Operation *> functions;
    for (LoopLikeOpInterface loop : tiles)
      functions.insert(loop->getParentOfType<FunctionOpInterface>());
    for (Operation *function : functions) {
      DominanceInfo dominance;
      eliminateCommonSubExpressions(rewriter, dominance, function);
    }
    if (!trimKeys)
      return;
    for (LoopLikeOpInterface loop : tiles) {
      auto tile = dyn_cast<scf::ForallOp>(loop.getOperation());
      if (!tile)
        continue;
      for (Operation &op : tile.getTerminator().getYieldingOps())
        if (auto insert = dyn_cast<tensor::ParallelInsertSliceOp>(op))
          if (auto pv = insert.getSource().getDefiningOp<linalg::GenericOp>())
            trimMaskedKeys(rewriter, tile, pv);
    }
  }
};

} // namespace
