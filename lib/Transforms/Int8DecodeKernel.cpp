//===- Int8DecodeKernel.cpp - quantised experts with int8 activations -----===//
//
// The kernels of quantised expert projections for experts marked by
// -moe-int8-activations: activation rows are quantised to int8 once per
// projection (a scale per weight block, as llama.cpp's Q8 path and ONNX
// Runtime's accuracy level 4 do), and each 64 weight bytes are multiplied
// by them with vpdpbusd (AVX512-VNNI: unsigned weight codes times signed
// activation codes, four products summed into each i32 lane) instead of
// being converted to floats one by one. Floats appear once per weight
// block: the i32 lanes are converted and scaled by the weight's and the
// activation's scale. At decode the kernel takes dot products along each
// weight row; with more rows, outer products of weight panels rearranged
// for them (at every row count where -moe-pack-expert-weights has stored
// them rearranged). The kernels write vpdpbusd's semantics in portable vector
// ops; -moe-x86-vnni-dot emits the instruction.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/ExpertKernels.h"

#include "moe-mlir/Transforms/StageKernels.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;

/// Weight bytes one vpdpbusd reads (a 512-bit register).
static constexpr int64_t kStepBytes = 64;
/// i32 lanes of a vpdpbusd result.
static constexpr int64_t kLanes = 16;
/// Weight rows the int8 kernel multiplies per step (their reductions
/// shared); with up to kInt8WeightRows * 2 activation rows per group the
/// accumulators stay within AVX-512's 32 registers.
static constexpr int64_t kInt8WeightRows = 4;
/// Activation columns quantised per vector operation.
static constexpr int64_t kQuantizeChunk = 32;

std::optional<Int8Layout> mlir::moe::getInt8Layout(QuantAttr quant,
                                                   bool hasZeroPoints,
                                                   int64_t depth) {
  // Zero points other than the implicit 2^(bits - 1) would need a
  // correction per weight block; those layers keep the float kernel.
  if (hasZeroPoints || (quant.getBits() != 4 && quant.getBits() != 8))
    return std::nullopt;
  Int8Layout l;
  l.pack = quant.getPackFactor();
  l.blockCols = quant.getBlockSize() ? quant.getBlockSize() : depth;
  int64_t depthBytes = depth / l.pack;
  // Whole steps, blocks of whole quantisation chunks, and blocks that
  // either share a step or span whole steps, so that no i32 lane mixes two
  // blocks.
  if (depth % (kStepBytes * l.pack) || depth % l.blockCols ||
      l.blockCols % kQuantizeChunk)
    return std::nullopt;
  l.blockBytes = l.blockCols / l.pack;
  if (kStepBytes % l.blockBytes && l.blockBytes % kStepBytes)
    return std::nullopt;
  l.unitBytes = std::max(l.blockBytes, kStepBytes);
  l.blocksPerUnit = l.unitBytes / l.blockBytes;
  l.units = depthBytes / l.unitBytes;
  l.blocks = depth / l.blockCols;
  l.zeroPoint = int64_t(1) << (quant.getBits() - 1);
  return l;
}

ExpertInt8Layouts mlir::moe::getExpertInt8Layouts(ExpertOp expert,
                                                  int64_t hidden,
                                                  int64_t inter) {
  QuantAttr quant = expert.getQuantAttr();
  if (!quant || !expert->hasAttr(kInt8ActivationsAttrName) ||
      !computeTypeFor(getElementTypeOrSelf(expert.getRows().getType())).isF32())
    return {};
  ExpertInt8Layouts layouts;
  layouts.fc1 = getInt8Layout(quant, bool(expert.getFc1ZeroPoints()), hidden);
  if (expert.getFc3() &&
      !getInt8Layout(quant, bool(expert.getFc3ZeroPoints()), hidden))
    layouts.fc1.reset();
  layouts.fc2 = getInt8Layout(quant, bool(expert.getFc2ZeroPoints()), inter);
  return layouts;
}

/// acc[l] += sum_{i < 4} zext(w[4l + i]) * sext(a[4l + i]) on 64 bytes:
/// vpdpbusd's semantics in portable vector ops, which -moe-x86-vnni-dot
/// turns into the instruction where the target has it.
static Value emitVnniDot(ImplicitLocOpBuilder &b, Value acc, Value weightCodes,
                         Value activationCodes) {
  Type i32 = b.getI32Type();
  auto wide = VectorType::get({kStepBytes}, i32);
  auto groups = VectorType::get({kLanes, kStepBytes / kLanes}, i32);
  Value w = arith::ExtUIOp::create(b, wide, weightCodes);
  Value a = arith::ExtSIOp::create(b, wide, activationCodes);
  Value products =
      vector::ShapeCastOp::create(b, groups, arith::MulIOp::create(b, w, a));
  return vector::MultiDimReductionOp::create(b, products, acc,
                                             ArrayRef<bool>{false, true},
                                             vector::CombiningKind::ADD)
      .getResult();
}

/// What both int8 kernels read a projection with: 64-byte steps of weight
/// codes, 16 i32 or f32 lanes, the weights' storage and scale types.
struct Int8Operands {
  VectorType bytes, lanesI32, lanesF32;
  Type storage, scaleType;
  bool perRowScales;

  Int8Operands(Builder &b, const QuantizedProjection &p)
      : bytes(VectorType::get({kStepBytes}, b.getI8Type())),
        lanesI32(VectorType::get({kLanes}, b.getI32Type())),
        lanesF32(VectorType::get({kLanes}, b.getF32Type())),
        storage(cast<MemRefType>(p.weights.getType()).getElementType()),
        scaleType(cast<MemRefType>(p.scales.getType()).getElementType()),
        perRowScales(cast<MemRefType>(p.scales.getType()).getRank() == 2) {}

  /// The 64 weight bytes of row n of expert x from `byte`, as i8.
  Value loadStep(ImplicitLocOpBuilder &b, const QuantizedProjection &p, Value x,
                 Value n, Value byte) const {
    Value raw =
        vector::LoadOp::create(b, VectorType::get({kStepBytes}, storage),
                               p.weights, ValueRange{x, n, byte});
    return UnrealizedConversionCastOp::create(b, bytes, raw).getResult(0);
  }
};

/// `v` (a vector of floats) as a vector of f32.
static Value toF32(ImplicitLocOpBuilder &b, Value v) {
  auto type = cast<VectorType>(v.getType());
  if (type.getElementType().isF32())
    return v;
  return arith::ExtFOp::create(b, type.clone(b.getF32Type()), v);
}

void mlir::moe::emitQuantizeRowsInt8(ImplicitLocOpBuilder &b, Value a,
                                     const Int8Layout &l,
                                     const Int8Rows &out) {
  KernelEmitter e(b);
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), i8 = b.getI8Type();
  Type rowType = cast<MemRefType>(a.getType()).getElementType();
  auto chunkOf = [&](Type t) { return VectorType::get({kQuantizeChunk}, t); };
  Value c0 = e.index(0), c1 = e.index(1);
  Value chunk = e.index(kQuantizeChunk);
  Value blockCols = e.index(l.blockCols);
  e.parallelFor(c0, e.dim(a, 0), c1, [&](Value m) {
    // Lanes of blocks that do not start a unit's lanes stay zero.
    Value zeros = e.splat(VectorType::get({kLanes}, i32), 0);
    e.loop(
        c0, e.index(l.units * kLanes),
        [&](Value j) {
          vector::StoreOp::create(b, zeros, out.corrections, ValueRange{m, j});
        },
        e.index(kLanes));
    e.loop(c0, e.index(l.blocks), [&](Value blk) {
      Value k0 = e.muli(blk, blockCols);
      auto loadChunk = [&](Value j) {
        return toF32(b, vector::LoadOp::create(b, chunkOf(rowType), a,
                                               ValueRange{m, e.addi(k0, j)}));
      };
      // The block's largest magnitude gives its scale: amax / 127.
      Value amaxInit = e.splat(chunkOf(f32), 0.0);
      Value amaxVec =
          e.loop(c0, blockCols, amaxInit,
                 [&](Value j, ValueRange acc) -> SmallVector<Value> {
                   Value mag = math::AbsFOp::create(b, loadChunk(j));
                   return {arith::MaximumFOp::create(b, acc[0], mag)};
                 },
                 chunk)[0];
      Value amax = vector::ReductionOp::create(
          b, vector::CombiningKind::MAXIMUMF, amaxVec);
      Value positive = e.cmpf(arith::CmpFPredicate::OGT, amax, e.f(f32, 0));
      Value inverse = e.select(positive, e.divf(e.f(f32, 127), amax),
                               e.f(f32, 0));
      e.store(e.divf(amax, e.f(f32, 127)), out.scales, {m, blk});
      Value inverseVec = vector::BroadcastOp::create(b, chunkOf(f32), inverse);
      Value sumInit = e.splat(chunkOf(i32), 0);
      Value sumVec =
          e.loop(c0, blockCols, sumInit,
                 [&](Value j, ValueRange acc) -> SmallVector<Value> {
                   Value scaled = e.mulf(loadChunk(j), inverseVec);
                   Value rounded = math::RoundEvenOp::create(b, scaled);
                   Value q = arith::FPToSIOp::create(b, chunkOf(i32), rounded);
                   Value codes = arith::TruncIOp::create(b, chunkOf(i8), q);
                   Value k = e.addi(k0, j);
                   if (l.pack == 1) {
                     vector::StoreOp::create(b, codes, out.codes,
                                             ValueRange{m, k});
                   } else {
                     // Each step of 128 columns: its 64 even columns, then
                     // its 64 odd ones, as the low and high nibbles of the
                     // step's weight bytes come.
                     int64_t stepCols = kStepBytes * l.pack;
                     Value stepStart = e.muli(
                         arith::DivUIOp::create(b, k, e.index(stepCols)),
                         e.index(stepCols));
                     Value within = arith::DivUIOp::create(
                         b, e.subi(k, stepStart), e.index(2));
                     Value even = e.addi(stepStart, within);
                     Value odd = e.addi(even, e.index(kStepBytes));
                     auto halves = vector::DeinterleaveOp::create(b, codes);
                     vector::StoreOp::create(b, halves.getRes1(), out.codes,
                                             ValueRange{m, even});
                     vector::StoreOp::create(b, halves.getRes2(), out.codes,
                                             ValueRange{m, odd});
                   }
                   return {e.addi(acc[0], q)};
                 },
                 chunk)[0];
      // sum_k (q_w - zp) q_a = dot(q_w, q_a) - zp * sum_k q_a: the second
      // term starts the i32 lanes of the block's first unit (its first
      // lane), so that the kernel's integer sums come out exact.
      Value sum = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                              sumVec);
      Value correction = arith::MulIOp::create(b, sum, e.i32(-l.zeroPoint));
      Value unit, lane;
      if (l.blocksPerUnit > 1) {
        Value perUnit = e.index(l.blocksPerUnit);
        unit = arith::DivUIOp::create(b, blk, perUnit);
        lane = e.muli(arith::RemUIOp::create(b, blk, perUnit),
                      e.index(kLanes / l.blocksPerUnit));
      } else {
        unit = blk;
        lane = c0;
      }
      e.store(correction, out.corrections,
              {m, e.addi(e.muli(unit, e.index(kLanes)), lane)});
    });
  });
}

void mlir::moe::emitInt8Matvec(ImplicitLocOpBuilder &b, const Int8Rows &rows,
                               const QuantizedProjection &p, Value x,
                               Value nBegin, Value nEnd, Value c) {
  KernelEmitter e(b);
  const Int8Layout &l = rows.layout;
  Int8Operands o(b, p);
  Type f32 = b.getF32Type();
  VectorType bytesType = o.bytes, lanesI32 = o.lanesI32, lanesF32 = o.lanesF32;
  Type scaleType = o.scaleType;
  bool perRowScales = o.perRowScales;
  auto dot = [&](Value acc, Value weightCodes, Value activationCodes) {
    return emitVnniDot(b, acc, weightCodes, activationCodes);
  };
  Value nibbleMask = e.splat(bytesType, 15);
  Value nibbleShift = e.splat(bytesType, 4);
  Value zeroF32 = e.splat(lanesF32, 0.0);

  SmallVector<int64_t> spread;
  for (int64_t lane = 0; lane < kLanes; ++lane)
    spread.push_back(lane / (kLanes / l.blocksPerUnit));
  // `count` weight rows from n times `group` rows of activations from m0:
  // the activation codes are loaded once for all weight rows, the weight
  // bytes once for all activation rows.
  auto emitRows = [&](Value n0, int64_t count, Value m0, int64_t group) {
    SmallVector<Value> ns, ms;
    for (int64_t r = 0; r < count; ++r)
      ns.push_back(e.addi(n0, e.index(r)));
    for (int64_t i = 0; i < group; ++i)
      ms.push_back(e.addi(m0, e.index(i)));
    // The rows of codes, scales and corrections holding those input rows.
    SmallVector<Value> sources;
    for (Value m : ms)
      sources.push_back(rows.sourceRow(e, m));
    // Accumulators, weight row major: acc[r * group + i].
    auto pairs = [&](auto body) {
      for (int64_t r = 0; r < count; ++r)
        for (int64_t i = 0; i < group; ++i)
          body(r, i, r * group + i);
    };
    SmallVector<Value> init(count * group, zeroF32);
    SmallVector<Value> sums = e.loop(
        e.index(0), e.index(l.units), init,
        [&](Value unit, ValueRange facc) -> SmallVector<Value> {
          Value unitByte = e.muli(unit, e.index(l.unitBytes));
          SmallVector<Value> start;
          for (Value m : sources)
            start.push_back(vector::LoadOp::create(
                b, lanesI32, rows.corrections,
                ValueRange{m, e.muli(unit, e.index(kLanes))}));
          SmallVector<Value> iacc(count * group);
          pairs([&](int64_t, int64_t i, int64_t k) { iacc[k] = start[i]; });
          iacc = e.loop(
              e.index(0), e.index(l.unitBytes), iacc,
              [&](Value j, ValueRange acc) -> SmallVector<Value> {
                Value byte = e.addi(unitByte, j);
                // Each weight row's codes: the bytes, or their low and high
                // nibbles (even and odd columns).
                SmallVector<SmallVector<Value, 2>> weightCodes;
                for (Value n : ns) {
                  Value raw = o.loadStep(b, p, x, n, byte);
                  if (l.pack == 1)
                    weightCodes.push_back({raw});
                  else
                    weightCodes.push_back(
                        {arith::AndIOp::create(b, raw, nibbleMask),
                         arith::ShRUIOp::create(b, raw, nibbleShift)});
                }
                // Each activation row's codes in the same order.
                SmallVector<SmallVector<Value, 2>> activationCodes;
                Value col = l.pack == 1 ? byte : e.muli(byte, e.index(2));
                for (Value m : sources) {
                  SmallVector<Value, 2> codes = {vector::LoadOp::create(
                      b, bytesType, rows.codes, ValueRange{m, col})};
                  if (l.pack != 1)
                    codes.push_back(vector::LoadOp::create(
                        b, bytesType, rows.codes,
                        ValueRange{m, e.addi(col, e.index(kStepBytes))}));
                  activationCodes.push_back(codes);
                }
                SmallVector<Value> next(acc);
                pairs([&](int64_t r, int64_t i, int64_t k) {
                  for (auto [w, a] :
                       llvm::zip(weightCodes[r], activationCodes[i]))
                    next[k] = dot(next[k], w, a);
                });
                return next;
              },
              e.index(kStepBytes));
          // The scales of the unit's blocks, each over its lanes: a weight
          // row's times an activation row's.
          Value blockIndex = e.muli(unit, e.index(l.blocksPerUnit));
          SmallVector<Value> weightScales, activationScales;
          for (Value n : ns) {
            if (l.blocksPerUnit > 1) {
              auto type = VectorType::get({l.blocksPerUnit}, scaleType);
              Value v = toF32(b, vector::LoadOp::create(
                                     b, type, p.scales,
                                     ValueRange{x, n, blockIndex}));
              weightScales.push_back(
                  vector::ShuffleOp::create(b, v, v, spread));
            } else {
              Value v = perRowScales ? e.load(p.scales, {x, n})
                                     : e.load(p.scales, {x, n, unit});
              weightScales.push_back(vector::BroadcastOp::create(
                  b, lanesF32, e.castFloat(v, f32)));
            }
          }
          for (Value m : sources) {
            if (l.blocksPerUnit > 1) {
              Value v = vector::LoadOp::create(
                  b, VectorType::get({l.blocksPerUnit}, f32), rows.scales,
                  ValueRange{m, blockIndex});
              activationScales.push_back(
                  vector::ShuffleOp::create(b, v, v, spread));
            } else {
              activationScales.push_back(vector::BroadcastOp::create(
                  b, lanesF32, e.load(rows.scales, {m, unit})));
            }
          }
          SmallVector<Value> next(count * group);
          pairs([&](int64_t r, int64_t i, int64_t k) {
            Value scales = e.mulf(weightScales[r], activationScales[i]);
            Value products = arith::SIToFPOp::create(b, lanesF32, iacc[k]);
            next[k] = vector::FMAOp::create(b, products, scales, facc[k]);
          });
          return next;
        });
    Value column = e.subi(n0, nBegin);
    for (auto [i, m] : llvm::enumerate(ms)) {
      SmallVector<Value> lanes;
      for (int64_t r = 0; r < count; ++r)
        lanes.push_back(sums[r * group + i]);
      if (count == 1) {
        Value sum = vector::ReductionOp::create(
            b, vector::CombiningKind::ADD, lanes[0], Value(),
            arith::FastMathFlags::reassoc);
        e.store(e.addf(e.load(c, {m, column}), sum), c, {m, column});
        continue;
      }
      // The rows' sums side by side in one vector, sharing the shuffles
      // that one reduction each would take.
      Value perRow = reduceTransposed(b, lanes);
      auto outType = VectorType::get({count}, f32);
      Value old = vector::LoadOp::create(b, outType, c, ValueRange{m, column});
      vector::StoreOp::create(b, e.addf(old, perRow), c, ValueRange{m, column});
    }
  };
  // Several weight rows per step pay where a unit's scales are one
  // broadcast per row (1.15-2.7x on int8 Mixtral / 4, per-row scales); with
  // a shuffle of several blocks' scales per weight row they cost more than
  // the shared reductions save (0.8-0.95x on int4 Qwen3 / 2, blocks of 32).
  emitDecodeTiles(b, nBegin, nEnd, rows.numRows(e), emitRows,
                  l.blocksPerUnit == 1 ? kInt8WeightRows : 1);
}

/// The transpose of 16 vectors of 16 lanes: lane i of result j is lane j
/// of vector i. Each of four rounds swaps one bit between the vector index
/// and the lane index of every element (a shuffle per vector and round), so
/// that the 16 x 16 block costs 64 two-source shuffles.
static SmallVector<Value> transpose16(ImplicitLocOpBuilder &b,
                                      ArrayRef<Value> vectors) {
  SmallVector<Value> v(vectors);
  for (int64_t bit : {8, 4, 2, 1}) {
    SmallVector<int64_t> lowMask, highMask;
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      // The vector without `bit` keeps its lanes without it and takes the
      // partner's lanes without it into its lanes with it; the partner
      // keeps its lanes with it and takes the others.
      lowMask.push_back(lane & bit ? kLanes + (lane ^ bit) : lane);
      highMask.push_back(lane & bit ? kLanes + lane : lane ^ bit);
    }
    SmallVector<Value> next(v.size());
    for (int64_t i = 0; i < kLanes; ++i) {
      if (i & bit)
        continue;
      next[i] = vector::ShuffleOp::create(b, v[i], v[i | bit], lowMask);
      next[i | bit] = vector::ShuffleOp::create(b, v[i], v[i | bit], highMask);
    }
    v = std::move(next);
  }
  return v;
}

/// Activation rows per register block of the int8 panel kernel, and
/// 16-column vectors per block: 24 i32 accumulators, 4 weight vectors and a
/// broadcast within AVX-512's 32 registers; with several scale blocks per
/// row, 12 i32 and 12 f32 accumulators.
static constexpr int64_t kPanelRows = 6;
static constexpr int64_t kPanelRowsFloatSums = 3;
/// Blocks of up to this many weight words are emitted unrolled.
static constexpr int64_t kMaxUnrolledWords = 8;
static constexpr int64_t kPanelVectors = 4;
/// Row blocks a task needs for its first column group to prefetch the next
/// task's weights: with fewer, each block's share is a burst of prefetches
/// that competes with the task's own loads.
static constexpr int64_t kMinPrefetchRowBlocks = 4;

void mlir::moe::emitInt8PanelGemm(ImplicitLocOpBuilder &b, const Int8Rows &rows,
                                  const QuantizedProjection &p, Value x,
                                  Value nBegin, Value nEnd, Value bias,
                                  Value c) {
  KernelEmitter e(b);
  const Int8Layout &l = rows.layout;
  Int8Operands o(b, p);
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), i8 = b.getI8Type();
  VectorType bytesType = o.bytes, lanesI32 = o.lanesI32, lanesF32 = o.lanesF32;
  Type scaleType = o.scaleType;
  bool perRowScales = o.perRowScales;
  int64_t depth = l.blocks * l.blockCols;
  // The weights as 4-byte words: a block's are consecutive (blocks of
  // whole steps, or the same quarter or half of every step's bytes).
  int64_t words = depth / l.pack / 4, wordsPerBlock = l.blockBytes / 4;
  int64_t steps = depth / l.pack / kStepBytes;
  Value c0 = e.index(0), c1 = e.index(1), lanes = e.index(kLanes);
  Value width = e.subi(nEnd, nBegin);
  Value vectors = arith::CeilDivUIOp::create(b, width, lanes);
  Value paddedWidth = e.muli(vectors, lanes);

  // The panel's weights in the order vpdpbusd wants them against a
  // broadcast activation quad: packed[w, n] holds weight word w of column
  // n, so that 16 neighbouring columns are one 64-byte load. Its bytes are
  // the codes of quad w (code positions 4w to 4w + 3, the activation codes'
  // order) for 8-bit weights; for 4-bit ones the low nibbles are the codes
  // of one quad and the high nibbles of the quad 16 after it (a step's 64
  // even code positions, then its 64 odd ones). Columns past the panel
  // repeat its last one; their lanes are never stored.
  // Panel-major weights (`[E, N / P, words, P, 4]`) hold those vectors
  // already, in rows of P columns: viewed as `[E, N / P, words, 4 P]`
  // bytes, 16 columns from a multiple of 16 are 64 consecutive bytes.
  bool prepacked = p.panelWidth != 0;
  Value packed =
      prepacked ? memref::CollapseShapeOp::create(
                      b, p.weights,
                      ArrayRef<ReassociationIndices>{{0}, {1}, {2}, {3, 4}})
                      .getResult()
                : memref::AllocOp::create(
                      b, MemRefType::get({words, ShapedType::kDynamic}, i32),
                      ValueRange{paddedWidth}, b.getI64IntegerAttr(64))
                      .getResult();
  // Word `word` of the 16 columns from panel column `col`, as bytes.
  Value panelWidth = e.index(prepacked ? p.panelWidth : 1);
  auto loadWordOfColumns = [&](Value word, Value col) -> Value {
    if (!prepacked)
      return vector::BitCastOp::create(
          b, bytesType,
          vector::LoadOp::create(b, lanesI32, packed, ValueRange{word, col}));
    Value n = e.addi(nBegin, col);
    Value raw = vector::LoadOp::create(
        b, VectorType::get({kStepBytes}, o.storage), packed,
        ValueRange{
            x, arith::DivUIOp::create(b, n, panelWidth), word,
            e.muli(arith::RemUIOp::create(b, n, panelWidth), e.index(4))});
    return UnrealizedConversionCastOp::create(b, bytesType, raw).getResult(0);
  };
  // Each block's weight scales as f32, likewise 16 columns to a load (for
  // blocks, rows for whole groups of 16 blocks, the last ones unused).
  // Panel-major block-wise scales (`[E, N / P, blocks, P]`) are read as
  // they are.
  bool prepackedScales = prepacked && !perRowScales;
  int64_t scaleRows = perRowScales ? 1 : llvm::alignTo(l.blocks, kLanes);
  Value weightScales =
      prepackedScales
          ? Value()
          : memref::AllocOp::create(
                b, MemRefType::get({scaleRows, ShapedType::kDynamic}, f32),
                ValueRange{paddedWidth}, b.getI64IntegerAttr(64))
                .getResult();
  auto loadScalesOfColumns = [&](Value blk, Value col) -> Value {
    if (!prepackedScales)
      return vector::LoadOp::create(b, lanesF32, weightScales,
                                    ValueRange{blk, col});
    Value n = e.addi(nBegin, col);
    return toF32(
        b, vector::LoadOp::create(
               b, VectorType::get({kLanes}, scaleType), p.scales,
               ValueRange{x, arith::DivUIOp::create(b, n, panelWidth), blk,
                          arith::RemUIOp::create(b, n, panelWidth)}));
  };
  auto scalesType = VectorType::get({kLanes}, scaleType);
  auto maskType = VectorType::get({kLanes}, b.getI1Type());
  Value zeroScales = e.splat(scalesType, 0.0);
  Value lastColumn = e.subi(nEnd, c1);
  Value nibbleMask = e.splat(bytesType, 15);
  Value nibbleShift = e.splat(bytesType, 4);
  // Rearranged per call: whatever is not panel-major (with panel-major
  // weights, per-row scales are copied, 16 columns to a load).
  auto rearrange = [&](Value vec) {
    Value col0 = e.muli(vec, lanes);
    SmallVector<Value> columns;
    for (int64_t i = 0; i < kLanes; ++i)
      columns.push_back(arith::MinUIOp::create(
          b, e.addi(nBegin, e.addi(col0, e.index(i))), lastColumn));
    if (perRowScales) {
      Value mask = vector::CreateMaskOp::create(
          b, maskType, ValueRange{e.subi(width, col0)});
      Value scales = vector::MaskedLoadOp::create(
          b, scalesType, p.scales, ValueRange{x, e.addi(nBegin, col0)}, mask,
          zeroScales);
      vector::StoreOp::create(b, toF32(b, scales), weightScales,
                              ValueRange{c0, col0});
    } else {
      // The 16 columns' scales of 16 blocks at a time, transposed.
      e.loop(
          c0, e.index(scaleRows),
          [&](Value firstBlock) {
            Value mask = vector::CreateMaskOp::create(
                b, maskType, ValueRange{e.subi(e.index(l.blocks), firstBlock)});
            SmallVector<Value> blocksOfColumns;
            for (Value n : columns)
              blocksOfColumns.push_back(toF32(
                  b, vector::MaskedLoadOp::create(b, scalesType, p.scales,
                                                  ValueRange{x, n, firstBlock},
                                                  mask, zeroScales)));
            for (auto [j, columnsOfBlock] :
                 llvm::enumerate(transpose16(b, blocksOfColumns)))
              vector::StoreOp::create(
                  b, columnsOfBlock, weightScales,
                  ValueRange{e.addi(firstBlock, e.index(j)), col0});
          },
          lanes);
    }
    if (prepacked)
      return;
    e.loop(c0, e.index(steps), [&](Value step) {
      // Each column's 64 bytes, transposed: 16 columns' 4-byte words.
      Value byte = e.muli(step, e.index(kStepBytes));
      SmallVector<Value> wordsOfColumns;
      for (Value n : columns)
        wordsOfColumns.push_back(vector::BitCastOp::create(
            b, lanesI32, o.loadStep(b, p, x, n, byte)));
      Value firstWord = e.muli(step, lanes);
      for (auto [j, columnsOfWord] :
           llvm::enumerate(transpose16(b, wordsOfColumns)))
        vector::StoreOp::create(
            b, columnsOfWord, packed,
            ValueRange{e.addi(firstWord, e.index(j)), col0});
    });
  };
  if (!prepackedScales)
    e.loop(c0, vectors, rearrange);

  // Where each block's -zp * sum q sits in the corrections: the first lane
  // that the block owns in its unit.
  auto correctionIndex = [&](Value blk) {
    Value perUnit = e.index(l.blocksPerUnit);
    return e.addi(e.muli(arith::DivUIOp::create(b, blk, perUnit), lanes),
                  e.muli(arith::RemUIOp::create(b, blk, perUnit),
                         e.index(kLanes / l.blocksPerUnit)));
  };

  // c[m0 + r, 16 (v0 + v) + lane] for `count` rows from m0 and `group`
  // column vectors from v0: an i32 accumulator per row and vector, started
  // at each block's -zp * sum q of its row, converted and scaled by the
  // weight's and the activation's scales at the block's end, added to the
  // bias (or zeros) and written to c: at once with a single block (per-row
  // scales), through f32 accumulators with several. `eachStep`, if given,
  // is emitted once per step along K (the step's index): per weight word
  // with a single block, per block with several (not between a block's
  // few unrolled words, which keep the accumulators in registers).
  auto quadType = VectorType::get({4}, i8);
  auto oneLane = VectorType::get({1}, i32);
  bool floatSums = l.blocks > 1;
  auto emitBlock = [&](Value m0, int64_t count, Value v0, int64_t group,
                       function_ref<void(Value)> eachStep = nullptr) {
    SmallVector<Value> ms, sources, cols;
    for (int64_t r = 0; r < count; ++r) {
      ms.push_back(e.addi(m0, e.index(r)));
      sources.push_back(rows.sourceRow(e, ms.back()));
    }
    for (int64_t v = 0; v < group; ++v)
      cols.push_back(e.muli(e.addi(v0, e.index(v)), lanes));
    // One weight word's products added to the accumulators `acc`: 8-bit
    // weights hold the codes of quad `word`, 4-bit ones those of two quads
    // 16 apart (the low and the high nibbles of a step's bytes).
    auto wordStep = [&](Value word, ValueRange acc) -> SmallVector<Value> {
      if (eachStep && !floatSums)
        eachStep(word);
      SmallVector<Value> raw;
      for (Value col : cols)
        raw.push_back(loadWordOfColumns(word, col));
      SmallVector<Value> next(acc);
      auto multiply = [&](ArrayRef<Value> weights, Value quad) {
        Value k = e.muli(quad, e.index(4));
        for (auto [r, m] : llvm::enumerate(sources)) {
          // The row's quad in every lane.
          Value codes = vector::BitCastOp::create(
              b, oneLane,
              vector::LoadOp::create(b, quadType, rows.codes,
                                     ValueRange{m, k}));
          Value activation = vector::BitCastOp::create(
              b, bytesType, vector::BroadcastOp::create(b, lanesI32, codes));
          for (int64_t v = 0; v < group; ++v)
            next[r * group + v] =
                emitVnniDot(b, next[r * group + v], weights[v], activation);
        }
      };
      if (l.pack == 1) {
        multiply(raw, word);
        return next;
      }
      Value lowQuad = e.addi(
          e.muli(arith::DivUIOp::create(b, word, lanes), e.index(2 * kLanes)),
          arith::RemUIOp::create(b, word, lanes));
      SmallVector<Value> low, high;
      for (Value w : raw)
        low.push_back(arith::AndIOp::create(b, w, nibbleMask));
      multiply(low, lowQuad);
      for (Value w : raw)
        high.push_back(arith::ShRUIOp::create(b, w, nibbleShift));
      multiply(high, e.addi(lowQuad, lanes));
      return next;
    };
    // Block `blk`'s integer sums, scaled, added to what `addends` gives
    // (asked for after the sums, so that it holds no registers during them).
    auto accumulateBlock = [&](Value blk,
                               function_ref<SmallVector<Value>()> addends) {
      SmallVector<Value> sums;
      for (Value m : sources) {
        Value correction = e.load(rows.corrections, {m, correctionIndex(blk)});
        sums.append(group,
                    vector::BroadcastOp::create(b, lanesI32, correction));
      }
      // Short blocks (32 columns: 4 or 8 words) straight, without a loop's
      // overhead per few words.
      Value firstWord = e.muli(blk, e.index(wordsPerBlock));
      if (wordsPerBlock <= kMaxUnrolledWords) {
        for (int64_t i = 0; i < wordsPerBlock; ++i)
          sums = wordStep(e.addi(firstWord, e.index(i)), sums);
      } else {
        sums = e.loop(firstWord, e.addi(firstWord, e.index(wordsPerBlock)),
                      sums, wordStep);
      }
      SmallVector<Value> scales, next, base = addends();
      for (Value col : cols)
        scales.push_back(loadScalesOfColumns(blk, col));
      for (auto [r, m] : llvm::enumerate(sources)) {
        Value activationScale = vector::BroadcastOp::create(
            b, lanesF32, e.load(rows.scales, {m, blk}));
        for (int64_t v = 0; v < group; ++v)
          next.push_back(vector::FMAOp::create(
              b, arith::SIToFPOp::create(b, lanesF32, sums[r * group + v]),
              e.mulf(scales[v], activationScale), base[r * group + v]));
      }
      return next;
    };
    SmallVector<Value> masks;
    for (Value col : cols)
      masks.push_back(vector::CreateMaskOp::create(
          b, VectorType::get({kLanes}, b.getI1Type()),
          ValueRange{e.subi(width, col)}));
    // What the sums are added to: the bias, or zeros.
    auto initialC = [&] {
      SmallVector<Value> values;
      for (auto [v, col] : llvm::enumerate(cols)) {
        if (!bias) {
          values.push_back(e.splat(lanesF32, 0.0));
          continue;
        }
        auto vectorType = VectorType::get(
            {kLanes}, cast<MemRefType>(bias.getType()).getElementType());
        values.push_back(toF32(b, vector::MaskedLoadOp::create(
                                      b, vectorType, bias, ValueRange{col},
                                      masks[v], e.splat(vectorType, 0.0))));
      }
      SmallVector<Value> perRow;
      for (int64_t r = 0; r < count; ++r)
        perRow.append(values);
      return perRow;
    };
    SmallVector<Value> outputs;
    if (floatSums) {
      // Several blocks: their sums in f32 accumulators, then added to c.
      SmallVector<Value> zeros(count * group, e.splat(lanesF32, 0.0));
      outputs = e.loop(c0, e.index(l.blocks), zeros,
                       [&](Value blk, ValueRange acc) -> SmallVector<Value> {
                         if (eachStep)
                           eachStep(blk);
                         return accumulateBlock(
                             blk, [&] { return SmallVector<Value>(acc); });
                       });
      if (bias)
        for (auto [i, value] : llvm::enumerate(initialC()))
          outputs[i] = e.addf(value, outputs[i]);
    } else {
      outputs = accumulateBlock(c0, initialC);
    }
    for (auto [r, m] : llvm::enumerate(ms))
      for (auto [v, col] : llvm::enumerate(cols))
        vector::MaskedStoreOp::create(b, c, ValueRange{m, col}, masks[v],
                                      outputs[r * group + v]);
  };
  // Column vectors kPanelVectors at a time, then one at a time; rows
  // `panelRows` at a time, then the rest in blocks of 4, 2 and 1. The
  // packed panel stays in cache across the row blocks.
  int64_t panelRows = floatSums ? kPanelRowsFloatSums : kPanelRows;
  Value numRows = rows.numRows(e);
  Value rowBlocks = arith::DivUIOp::create(b, numRows, e.index(panelRows));
  Value blockedRows = e.muli(rowBlocks, e.index(panelRows));
  // While the panel computes, the weights after its own (in expert-major
  // order the next task's: the expert's next panel, or the next expert's
  // first) are prefetched into cache, a share per row block of the first
  // column group (of tasks with kMinPrefetchRowBlocks row blocks or more),
  // so that the next task does not start on cold weights. A share's lines
  // are spread over the block's steps along K, a few with each: issued at
  // once, they stalled the core on the misses in flight (a tenth of
  // fc1's time on int8 Mixtral / 4 at T = 512) while it could multiply.
  // Panel-major weights hold each task's columns as the same bytes (tasks
  // are whole panels), in another order.
  Value weights = prepacked ? packed : p.weights;
  auto weightsType = cast<MemRefType>(weights.getType());
  int64_t rowBytes =
      weightsType.hasStaticShape()
          ? weightsType.getNumElements() / weightsType.getDimSize(0) /
                (weightsType.getDimSize(1) * (prepacked ? p.panelWidth : 1))
          : 0;
  bool prefetchNext = weightsType.hasStaticShape() &&
                      weightsType.getLayout().isIdentity() &&
                      rowBytes % 64 == 0;
  if (!prefetchNext)
    rowBytes = 64;
  int64_t expertRows =
      prefetchNext ? weightsType.getDimSize(1) * (prepacked ? p.panelWidth : 1)
                   : 1;
  int64_t lastLine =
      prefetchNext ? weightsType.getNumElements() / 64 : int64_t(0);
  Value firstLine = e.muli(e.addi(e.muli(x, e.index(expertRows)), nEnd),
                           e.index(rowBytes / 64));
  Value nextLines = e.muli(width, e.index(rowBytes / 64));
  Value linesPerBlock = arith::CeilDivUIOp::create(
      b, nextLines, arith::MaxUIOp::create(b, rowBlocks, c1));
  // The weights as one run of bytes, so that a line's address is its
  // offset (not an index per dimension, a division and a remainder each).
  Value weightBytes =
      prefetchNext ? memref::CollapseShapeOp::create(
                         b, weights,
                         ArrayRef<ReassociationIndices>{llvm::to_vector(
                             llvm::seq<int64_t>(0, weightsType.getRank()))})
                         .getResult()
                   : Value();
  Value linesPerStep = arith::CeilDivUIOp::create(
      b, linesPerBlock, e.index(floatSums ? l.blocks : words));
  auto forRows = [&](Value v0, int64_t group) {
    e.loop(c0, rowBlocks, [&](Value rb) {
      Value firstRow = e.muli(rb, e.index(panelRows));
      if (!prefetchNext)
        return emitBlock(firstRow, panelRows, v0, group);
      // Row block rb's share of the lines, [from, to) (empty where this
      // block prefetches nothing).
      Value prefetches =
          arith::AndIOp::create(b, e.cmpi(arith::CmpIPredicate::eq, v0, c0),
                                e.cmpi(arith::CmpIPredicate::uge, rowBlocks,
                                       e.index(kMinPrefetchRowBlocks)));
      Value from = e.addi(firstLine, e.muli(rb, linesPerBlock));
      Value to = arith::MinUIOp::create(
          b, e.addi(from, linesPerBlock),
          arith::MinUIOp::create(b, e.addi(firstLine, nextLines),
                                 e.index(lastLine)));
      to = e.select(prefetches, arith::MaxUIOp::create(b, from, to), from);
      emitBlock(firstRow, panelRows, v0, group,
                [&](Value step) {
                  Value lo = arith::MinUIOp::create(
                      b, e.addi(from, e.muli(step, linesPerStep)), to);
                  Value hi =
                      arith::MinUIOp::create(b, e.addi(lo, linesPerStep), to);
                  e.loop(lo, hi, [&](Value line) {
                    memref::PrefetchOp::create(
                        b, weightBytes, e.muli(line, e.index(64)),
                        /*isWrite=*/false, /*localityHint=*/2,
                        /*isDataCache=*/true);
                  });
                });
    });
    // The last rows (fewer than a block) in blocks of powers of two, so
    // that a few rows (an expert's at decode) still share each weight
    // load.
    Value rest = e.subi(numRows, blockedRows);
    for (int64_t count = int64_t(llvm::bit_floor(uint64_t(panelRows - 1)));
         count >= 1; count /= 2) {
      Value first =
          e.addi(blockedRows,
                 arith::AndIOp::create(b, rest, e.index(~(2 * count - 1))));
      e.ifThen(e.cmpi(arith::CmpIPredicate::ne,
                      arith::AndIOp::create(b, rest, e.index(count)), c0),
               [&] { emitBlock(first, count, v0, group); });
    }
  };
  Value groups = arith::DivUIOp::create(b, vectors, e.index(kPanelVectors));
  e.loop(c0, groups, [&](Value g) {
    forRows(e.muli(g, e.index(kPanelVectors)), kPanelVectors);
  });
  e.loop(e.muli(groups, e.index(kPanelVectors)), vectors,
         [&](Value v) { forRows(v, 1); });
}
