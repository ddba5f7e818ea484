//===- ExpertKernels.cpp - grouped expert GEMMs for the GPU
//------------------===//
//
// moe.expert on the GPU is two grouped GEMMs over the dispatched rows:
//
//   act[r, j] = act(rows[r] . Wg[e, j] + bg, rows[r] . Wl[e, j] + bl)
//   y[r, h]   = act[r] . fc2[e, h] + b2
//
// where e is row r's expert and Wg/Wl ("gate" and "linear" products) are
// views of fc1 (and fc3) rows that depend on the activation: SwiGLU reads
// both halves of fc1 (interleaved or concatenated) or fc1 and fc3, GLU
// reads fc1 and fc3, plain activations read fc1 only. Evaluating both
// products in one kernel puts the activation in the first GEMM's epilogue:
// act is written once and fc1's output never reaches memory.
//
// Work is split in tiles of one expert's rows: block b of the grid finds
// its expert by walking the experts' tile counts (ceil(rows_e / BM)), so the
// grid is a static bound, ceil(N / BM) + E, and surplus blocks exit. Rows
// of an expert are contiguous (moe.dispatch), so a tile reads its weights
// from one expert only.
//
// f16/bf16 weights use tensor cores through nvvm.mma.sync m16n8k16 with f32
// accumulators; fragments are loaded straight from global memory in the
// PTX ISA's register layouts (groupID = lane / 4, threadID_in_group =
// lane % 4):
//   A (16x16, row-major): a0a1 (g, 2t..2t+1), a2a3 (g+8, 2t..),
//                         a4a5 (g, 2t+8..), a6a7 (g+8, 2t+8..)
//   B (16x8, column):     b0b1 (k 2t..2t+1, n g), b2b3 (k 2t+8.., n g)
//   C (16x8, f32):        c0c1 (g, 2t..2t+1), c2c3 (g+8, 2t..2t+1)
// f32 weights run a SIMT kernel with the same tiling.
//
//===----------------------------------------------------------------------===//

#include "GPUKernels.h"

#include "moe-mlir/Transforms/StageKernels.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

namespace {

/// One weight product of a GEMM: output column j reads row `row(j)` of
/// `weights[e]` (and of `bias[e]`, when present).
struct Product {
  Value weights, bias;
  std::function<Value(KernelEmitter &, Value)> row;
};

/// Rows of a tile and the expert they belong to.
struct Tile {
  Value expert; // E when the block has no tile
  Value rowStart, rowEnd;
};

/// Finds block `blockId`'s tile of `tileRows` rows: experts are visited in
/// order, each owning ceil(rows_e / tileRows) consecutive blocks. Offsets
/// are clamped to [0, numRows] and made monotone, as on the CPU, so that a
/// caller's bad offsets can only mis-assign rows, never index out of
/// bounds.
/// The grid size covering every tile findTile can hand out: each expert's
/// partial last tile adds at most one block to ceil(numRows / tileRows).
Value tileGridSize(KernelEmitter &e, Value numRows, int64_t tileRows,
                   int64_t numExperts) {
  return e.addi(ceilDiv(e, numRows, tileRows), e.index(numExperts));
}

Tile findTile(KernelEmitter &k, Value offsets, int64_t numExperts,
              Value numRows, int64_t tileRows, Value blockId) {
  ImplicitLocOpBuilder &b = k.builder();
  Value c0 = k.index(0), c1 = k.index(1), cE = k.index(numExperts);
  auto clampRow = [&](Value offset) {
    return clampRowOffset(k, offset, numRows);
  };
  SmallVector<Value> found =
      k.loop(c0, cE, {c0, cE, c0, c0, c0}, [&](Value x, ValueRange acc) {
        // acc: tiles before x, expert, row start, row end, running start
        Value start =
            arith::MaxSIOp::create(b, clampRow(k.load(offsets, x)), acc[4]);
        Value end = arith::MaxSIOp::create(
            b, clampRow(k.load(offsets, k.addi(x, c1))), start);
        Value tiles = ceilDiv(k, k.subi(end, start), tileRows);
        Value next = k.addi(acc[0], tiles);
        Value hit = k.land(k.cmpi(arith::CmpIPredicate::eq, acc[1], cE),
                           k.cmpi(arith::CmpIPredicate::ult, blockId, next));
        Value tileStart =
            k.addi(start, k.muli(k.subi(blockId, acc[0]), k.index(tileRows)));
        return SmallVector<Value>{next, k.select(hit, x, acc[1]),
                                  k.select(hit, tileStart, acc[2]),
                                  k.select(hit, end, acc[3]), end};
      });
  return {found[1], found[2], found[3]};
}

/// The products of the first GEMM (gate and, for gated activations,
/// linear) for `expert`.
SmallVector<Product>
firstGemmProducts(ExpertOp expert, const ExpertBuffers &buf, int64_t inter) {
  auto identity = [](KernelEmitter &, Value j) { return j; };
  Product gate{buf.fc1, buf.fc1Bias, identity};
  bool swiglu = expert.getActivation() == Activation::swiglu;
  SwigluFusion fusion = expert.getSwigluFusion();
  if (swiglu && fusion == SwigluFusion::interleaved) {
    gate.row = [](KernelEmitter &k, Value j) { return k.muli(j, k.index(2)); };
    Product linear{buf.fc1, buf.fc1Bias, [](KernelEmitter &k, Value j) {
                     return k.addi(k.muli(j, k.index(2)), k.index(1));
                   }};
    return {gate, linear};
  }
  if (swiglu && fusion == SwigluFusion::concatenated) {
    Product linear{buf.fc1, buf.fc1Bias, [inter](KernelEmitter &k, Value j) {
                     return k.addi(j, k.index(inter));
                   }};
    return {gate, linear};
  }
  if (buf.fc3)
    return {gate, Product{buf.fc3, buf.fc3Bias, identity}};
  return {gate};
}

/// Loads `buffer[indices]` as `type`, or 0 where `valid` is false. Indices
/// must be in bounds whatever `valid` says (callers clamp them).
Value loadOrZero(KernelEmitter &k, Value buffer, ValueRange indices,
                 Value valid, Type type) {
  Value v = k.castFloat(k.load(buffer, indices), type);
  return k.select(valid, v, k.f(type, 0.0));
}

Value clampIndex(KernelEmitter &k, Value v, Value size) {
  Value last =
      arith::MaxSIOp::create(k.builder(), k.subi(size, k.index(1)), k.index(0));
  return arith::MinSIOp::create(k.builder(), v, last);
}

/// A GEMM `out[r, j] = epilogue(r, j, a[r] . P0[e, j] + b0, a[r] . P1...)`
/// over tiles of one expert's rows, `numCols` output columns.
struct GroupedGemm {
  StringRef name;
  Value a;       // [N, K]
  Value offsets; // [E + 1]
  int64_t numExperts;
  int64_t depth;   // K
  int64_t numCols; // J
  SmallVector<Product> products;
  /// Writes one output element from the products' values (bias added).
  std::function<void(KernelEmitter &, Value r, Value j, ArrayRef<Value>)>
      epilogue;
};

//===----------------------------------------------------------------------===//
// Tensor cores: 4 warps, 64 rows x 32 columns per block
//===----------------------------------------------------------------------===//

constexpr int64_t kTcTileRows = 64;
constexpr int64_t kTcTileCols = 32;
constexpr int64_t kTcWarps = 4;

/// Packs two values of the multiplicand type into one mma operand register:
/// vector<2xf16> for f16, a 32-bit integer for bf16 (NVVM's spelling).
Value packPair(KernelEmitter &k, Value lo, Value hi) {
  ImplicitLocOpBuilder &b = k.builder();
  auto pair = VectorType::get({2}, lo.getType());
  Value v = vector::FromElementsOp::create(b, pair, ValueRange{lo, hi});
  if (lo.getType().isF16())
    return v;
  Value word =
      vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), v);
  return vector::ExtractOp::create(b, word, ArrayRef<int64_t>{0});
}

/// Where a thread's mma fragments lie in the block's tile: warp w owns rows
/// 16w .. 16w + 15; lane = 4g + t holds rows g (rows[0]) and g + 8 (rows[1])
/// and columns 2t, 2t + 1 (twoT) of its A and C/D fragments.
struct FragmentLayout {
  Value warp, lane;
  std::array<Value, 2> rows, rowsValid;
  Value twoT;
};

FragmentLayout fragmentLayout(KernelEmitter &k, Value threadX,
                              const Tile &tile) {
  ImplicitLocOpBuilder &kb = k.builder();
  Value c4 = k.index(4);
  FragmentLayout f;
  f.warp = arith::DivUIOp::create(kb, threadX, k.index(32));
  f.lane = arith::RemUIOp::create(kb, threadX, k.index(32));
  Value group = arith::DivUIOp::create(kb, f.lane, c4);
  Value inGroup = arith::RemUIOp::create(kb, f.lane, c4);
  f.rows[0] = k.addi(k.addi(tile.rowStart, k.muli(f.warp, k.index(16))), group);
  f.rows[1] = k.addi(f.rows[0], k.index(8));
  for (int64_t i = 0; i < 2; ++i)
    f.rowsValid[i] = k.cmpi(arith::CmpIPredicate::ult, f.rows[i], tile.rowEnd);
  f.twoT = k.muli(inGroup, k.index(2));
  return f;
}

/// Writes a warp's accumulators (for each product, kTcTileCols / 8 n-tiles
/// of 4 f32 registers): c0c1 at row g, c2c3 at row g + 8; columns
/// colBase + n * 8 + 2t and + 1. Biases are added and the GEMM's epilogue
/// applied in range only.
void emitFragmentEpilogue(KernelEmitter &k, const GroupedGemm &gemm,
                          const Tile &tile, ArrayRef<Value> acc,
                          const FragmentLayout &f, Value colBase) {
  const std::array<Value, 2> &rows = f.rows, &rowsValid = f.rowsValid;
  Value twoT = f.twoT;
  constexpr int64_t nTiles = kTcTileCols / 8;
  int64_t numProducts = gemm.products.size();
  Value cJ = k.index(gemm.numCols);
  for (int64_t n = 0; n < nTiles; ++n)
    for (int64_t i = 0; i < 4; ++i) {
      Value row = rows[i / 2];
      Value j = k.addi(k.addi(colBase, k.index(n * 8 + i % 2)), twoT);
      Value ok =
          k.land(rowsValid[i / 2], k.cmpi(arith::CmpIPredicate::ult, j, cJ));
      k.ifThen(ok, [&] {
        SmallVector<Value> values;
        for (int64_t p = 0; p < numProducts; ++p) {
          Value v = acc[(p * nTiles + n) * 4 + i];
          const Product &prod = gemm.products[p];
          if (prod.bias)
            v = k.addf(
                v, k.castFloat(k.load(prod.bias, {tile.expert, prod.row(k, j)}),
                               k.builder().getF32Type()));
          values.push_back(v);
        }
        gemm.epilogue(k, row, j, values);
      });
    }
}

/// One m16n8k16 mma.sync (row.col, f32 accumulators): returns D's four
/// registers for the accumulators `c`.
SmallVector<Value> mmaSync(KernelEmitter &k, Type mmaType, ValueRange a,
                           ValueRange b, ValueRange c) {
  ImplicitLocOpBuilder &kb = k.builder();
  NVVM::MMATypes ptxType =
      mmaType.isF16() ? NVVM::MMATypes::f16 : NVVM::MMATypes::bf16;
  auto structType = LLVM::LLVMStructType::getLiteral(
      kb.getContext(), SmallVector<Type>(4, kb.getF32Type()));
  Value d = NVVM::MmaOp::create(
      kb, structType, a, b, c, {16, 8, 16}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{ptxType, ptxType},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  SmallVector<Value> out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(kb, d, ArrayRef<int64_t>{i}));
  return out;
}

void emitTensorCoreGemm(ImplicitLocOpBuilder &b, const GroupedGemm &gemm,
                        Type mmaType, bool misplaceFragment) {
  KernelEmitter e(b);
  Value numRows = e.dim(gemm.a, 0);
  Value gridX = tileGridSize(e, numRows, kTcTileRows, gemm.numExperts);
  Value gridY = e.index(llvm::divideCeil(gemm.numCols, kTcTileCols));
  int64_t numProducts = gemm.products.size();
  constexpr int64_t nTiles = kTcTileCols / 8;

  launch(
      b, gemm.name, gridX, gridY, 32 * kTcWarps, 1,
      [&](KernelEmitter &k, const LaunchIds &id) {
        ImplicitLocOpBuilder &kb = k.builder();
        Tile tile = findTile(k, gemm.offsets, gemm.numExperts, numRows,
                             kTcTileRows, id.blockX);
        Value cE = k.index(gemm.numExperts);
        k.ifThen(k.cmpi(arith::CmpIPredicate::ult, tile.expert, cE), [&] {
          FragmentLayout frag = fragmentLayout(k, id.threadX, tile);
          Value group = arith::DivUIOp::create(kb, frag.lane, k.index(4));
          Value valid0 = frag.rowsValid[0], valid1 = frag.rowsValid[1];
          Value safe0 = clampIndex(k, frag.rows[0], numRows);
          Value safe1 = clampIndex(k, frag.rows[1], numRows);
          Value colBase = k.muli(id.blockY, k.index(kTcTileCols));
          Value cK = k.index(gemm.depth), cJ = k.index(gemm.numCols);
          Value twoT = frag.twoT;

          // Weight rows this thread reads for B fragments: column n * 8 + g of
          // the block's tile, per product.
          SmallVector<Value> bRows, bValid;
          for (const Product &p : gemm.products)
            for (int64_t n = 0; n < nTiles; ++n) {
              Value j = k.addi(k.addi(colBase, k.index(n * 8)), group);
              Value ok = k.cmpi(arith::CmpIPredicate::ult, j, cJ);
              Value rowCount = k.dim(p.weights, 1);
              bRows.push_back(
                  clampIndex(k, p.row(k, clampIndex(k, j, cJ)), rowCount));
              bValid.push_back(ok);
            }

          Value zero = k.f(kb.getF32Type(), 0.0);
          SmallVector<Value> init(numProducts * nTiles * 4, zero);
          SmallVector<Value> acc = k.loop(
              k.index(0), cK, init,
              [&](Value k0, ValueRange accIn) {
                // Columns 2t, 2t+1, 2t+8, 2t+9 of this K step.
                Value kc[4];
                Value kv[4];
                for (int64_t i = 0; i < 4; ++i) {
                  Value col =
                      k.addi(k.addi(k0, twoT), k.index((i / 2) * 8 + i % 2));
                  kv[i] = k.cmpi(arith::CmpIPredicate::ult, col, cK);
                  kc[i] = clampIndex(k, col, cK);
                }
                auto aElem = [&](Value row, Value rowOk, int64_t i) {
                  return loadOrZero(k, gemm.a, {row, kc[i]},
                                    k.land(rowOk, kv[i]), mmaType);
                };
                SmallVector<Value> aRegs = {packPair(k, aElem(safe0, valid0, 0),
                                                     aElem(safe0, valid0, 1)),
                                            packPair(k, aElem(safe1, valid1, 0),
                                                     aElem(safe1, valid1, 1)),
                                            packPair(k, aElem(safe0, valid0, 2),
                                                     aElem(safe0, valid0, 3)),
                                            packPair(k, aElem(safe1, valid1, 2),
                                                     aElem(safe1, valid1, 3))};
                if (misplaceFragment)
                  std::swap(aRegs[1], aRegs[2]);
                SmallVector<Value> accOut;
                for (int64_t p = 0; p < numProducts; ++p)
                  for (int64_t n = 0; n < nTiles; ++n) {
                    int64_t slot = p * nTiles + n;
                    Value w = gemm.products[p].weights;
                    auto bElem = [&](int64_t i) {
                      return loadOrZero(k, w, {tile.expert, bRows[slot], kc[i]},
                                        k.land(bValid[slot], kv[i]), mmaType);
                    };
                    SmallVector<Value> bRegs = {
                        packPair(k, bElem(0), bElem(1)),
                        packPair(k, bElem(2), bElem(3))};
                    llvm::append_range(accOut,
                                       mmaSync(k, mmaType, aRegs, bRegs,
                                               accIn.slice(slot * 4, 4)));
                  }
                return accOut;
              },
              k.index(16));

          emitFragmentEpilogue(k, gemm, tile, acc, frag, colBase);
        });
      });
}

//===----------------------------------------------------------------------===//
// Tensor cores through shared memory: cp.async stages, ldmatrix fragments
//===----------------------------------------------------------------------===//
//
// The same tiles, warps and accumulator layout as above, but operands reach
// the registers the way sm_80 kernels feed tensor cores: each k-tile of 32
// (the A rows and every product's weight rows of the block) is copied to
// shared memory with 16-byte cp.async (zero-filled outside the tile),
// kStages deep so that the copies of k-tiles t + 1 .. t + kStages - 1 are in
// flight while t is multiplied, and fragments are read with ldmatrix x4. Rows
// are padded by 8 elements (a pitch of 80 bytes), which puts the 8 rows one
// ldmatrix matrix reads in 8 distinct groups of 4 banks. Needs K % 8 == 0
// (16-byte rows); A in another type than the multiplicands (f32 tokens) is
// converted on its way to shared memory by plain loads and stores.

constexpr int64_t kStageDepth = 32;
constexpr int64_t kSmemPitch = kStageDepth + 8;
constexpr int64_t kStages = 3;
constexpr int64_t kTcThreads = 32 * kTcWarps;

bool canStageInSharedMemory(const GroupedGemm &gemm) {
  return gemm.depth >= 8 && gemm.depth % 8 == 0;
}

/// An ldmatrix result row (vector<2xT>) as an mma operand register.
Value mmaRegister(KernelEmitter &k, Value fragment, int64_t i) {
  ImplicitLocOpBuilder &b = k.builder();
  Value pair = vector::ExtractOp::create(b, fragment, ArrayRef<int64_t>{i});
  if (cast<VectorType>(pair.getType()).getElementType().isF16())
    return pair;
  Value word =
      vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, word, ArrayRef<int64_t>{0});
}

void emitStagedTensorCoreGemm(ImplicitLocOpBuilder &b, const GroupedGemm &gemm,
                              Type mmaType, bool misplaceFragment) {
  KernelEmitter e(b);
  MLIRContext *ctx = b.getContext();
  Value numRows = e.dim(gemm.a, 0);
  Value gridX = tileGridSize(e, numRows, kTcTileRows, gemm.numExperts);
  Value gridY = e.index(llvm::divideCeil(gemm.numCols, kTcTileCols));
  int64_t numProducts = gemm.products.size();
  constexpr int64_t nTiles = kTcTileCols / 8;
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  SmallVector<Type> sharedTypes = {
      MemRefType::get({kStages, kTcTileRows, kSmemPitch}, mmaType,
                      MemRefLayoutAttrInterface(), workgroup)};
  for (int64_t p = 0; p < numProducts; ++p)
    sharedTypes.push_back(MemRefType::get({kStages, kTcTileCols, kSmemPitch},
                                          mmaType, MemRefLayoutAttrInterface(),
                                          workgroup));
  bool asyncA = cast<MemRefType>(gemm.a.getType()).getElementType() == mmaType;

  auto body = [&](KernelEmitter &k, const LaunchIds &id) {
    ImplicitLocOpBuilder &kb = k.builder();
    Tile tile = findTile(k, gemm.offsets, gemm.numExperts, numRows, kTcTileRows,
                         id.blockX);
    Value cE = k.index(gemm.numExperts);
    // Block-uniform: every thread of the block takes the same branch, so
    // the barriers inside are reached by all.
    k.ifThen(k.cmpi(arith::CmpIPredicate::ult, tile.expert, cE), [&] {
      Value c4 = k.index(4), c8 = k.index(8), c16 = k.index(16);
      Value tid = id.threadX;
      FragmentLayout frag = fragmentLayout(k, tid, tile);
      Value warp = frag.warp, lane = frag.lane;
      Value colBase = k.muli(id.blockY, k.index(kTcTileCols));
      Value cK = k.index(gemm.depth), cJ = k.index(gemm.numCols);
      Value lastChunk = k.index(gemm.depth - 8);
      Value sharedA = id.workgroup[0];
      auto tokenType = nvgpu::DeviceAsyncTokenType::get(ctx);

      // Copies k-tile `kt` (zeros from the end of K on) into `stage`:
      // 8-element chunks, A's 64 x 4 two per thread, each product's
      // 32 x 4 one per thread.
      auto loadStage = [&](Value kt, Value stage) {
        Value k0 = k.muli(kt, k.index(kStageDepth));
        SmallVector<Value> tokens;
        auto chunk = [&](Value c, Value &row, Value &kc, Value &gk) {
          row = arith::DivUIOp::create(kb, c, c4);
          kc = k.muli(arith::RemUIOp::create(kb, c, c4), c8);
          gk = k.addi(k0, kc);
        };
        for (int64_t i = 0; i < kTcTileRows * 4 / kTcThreads; ++i) {
          Value row, kc, gk;
          chunk(k.addi(tid, k.index(i * kTcThreads)), row, kc, gk);
          Value globalRow = k.addi(tile.rowStart, row);
          Value valid =
              k.land(k.cmpi(arith::CmpIPredicate::ult, globalRow, tile.rowEnd),
                     k.cmpi(arith::CmpIPredicate::ult, gk, cK));
          Value srcRow = clampIndex(k, globalRow, numRows);
          Value srcK = arith::MinUIOp::create(kb, gk, lastChunk);
          if (asyncA) {
            tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
                kb, tokenType, sharedA, ValueRange{stage, row, kc}, gemm.a,
                ValueRange{srcRow, srcK}, kb.getIndexAttr(8),
                k.select(valid, c8, k.index(0)), /*bypassL1=*/nullptr));
            continue;
          }
          for (int64_t x = 0; x < 8; ++x)
            k.store(loadOrZero(k, gemm.a, {srcRow, k.addi(srcK, k.index(x))},
                               valid, mmaType),
                    sharedA, {stage, row, k.addi(kc, k.index(x))});
        }
        for (auto [p, prod] : llvm::enumerate(gemm.products)) {
          Value row, kc, gk;
          chunk(tid, row, kc, gk);
          Value j = k.addi(colBase, row);
          Value valid = k.land(k.cmpi(arith::CmpIPredicate::ult, j, cJ),
                               k.cmpi(arith::CmpIPredicate::ult, gk, cK));
          Value weightRow = clampIndex(k, prod.row(k, clampIndex(k, j, cJ)),
                                       k.dim(prod.weights, 1));
          tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
              kb, tokenType, id.workgroup[1 + p], ValueRange{stage, row, kc},
              prod.weights,
              ValueRange{tile.expert, weightRow,
                         arith::MinUIOp::create(kb, gk, lastChunk)},
              kb.getIndexAttr(8), k.select(valid, c8, k.index(0)),
              /*bypassL1=*/nullptr));
        }
        return nvgpu::DeviceAsyncCreateGroupOp::create(kb, tokenType, tokens)
            .getResult();
      };

      Value numK = ceilDiv(k, cK, kStageDepth);
      // The first kStages - 1 k-tiles, a commit group each.
      for (int64_t s = 0; s + 1 < kStages; ++s)
        loadStage(k.index(s), k.index(s));
      // Per lane, the ldmatrix x4 row it addresses: A's matrices are
      // (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
      // (rows 8-15, k 8-15), i.e. a0a1, a2a3, a4a5, a6a7; each product's
      // (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15),
      // i.e. b0b1 and b2b3 of two n-tiles.
      Value matrix = arith::DivUIOp::create(kb, lane, c8);
      Value matrixRow = arith::RemUIOp::create(kb, lane, c8);
      Value lowHigh = arith::RemUIOp::create(kb, matrix, k.index(2));
      Value upperPair = arith::DivUIOp::create(kb, matrix, k.index(2));
      Value aRow =
          k.addi(k.addi(k.muli(warp, c16), k.muli(lowHigh, c8)), matrixRow);
      Value aCol = k.muli(upperPair, c8);
      Value bRow = k.addi(k.muli(upperPair, c8), matrixRow);
      Value bCol = k.muli(lowHigh, c8);
      auto fragmentType = [&](int64_t n) {
        return VectorType::get({n, 2}, mmaType);
      };

      Value zero = k.f(kb.getF32Type(), 0.0);
      SmallVector<Value> init(numProducts * nTiles * 4, zero);
      SmallVector<Value> acc =
          k.loop(k.index(0), numK, init, [&](Value kt, ValueRange accIn) {
            Value stage = arith::RemUIOp::create(kb, kt, k.index(kStages));
            // k-tile kt + kStages - 1 (zeros past the end) goes to the stage
            // the previous iteration read; waiting for all groups but the
            // newest kStages - 1 completes k-tile kt's and leaves the later
            // ones in flight while kt is multiplied.
            Value ahead = k.addi(kt, k.index(kStages - 1));
            Value pending = loadStage(
                ahead, arith::RemUIOp::create(kb, ahead, k.index(kStages)));
            nvgpu::DeviceAsyncWaitOp::create(kb, pending,
                                             kb.getI32IntegerAttr(kStages - 1));
            gpu::BarrierOp::create(kb);
            SmallVector<Value> accOut(accIn.begin(), accIn.end());
            for (int64_t ks = 0; ks < kStageDepth / 16; ++ks) {
              Value kOff = k.index(ks * 16);
              Value aFrag = nvgpu::LdMatrixOp::create(
                  kb, fragmentType(4), sharedA,
                  ValueRange{stage, aRow, k.addi(aCol, kOff)},
                  kb.getBoolAttr(false), kb.getI32IntegerAttr(4));
              SmallVector<Value> aRegs;
              for (int64_t i = 0; i < 4; ++i)
                aRegs.push_back(mmaRegister(k, aFrag, i));
              if (misplaceFragment)
                std::swap(aRegs[1], aRegs[2]);
              for (int64_t p = 0; p < numProducts; ++p)
                for (int64_t pair = 0; pair < nTiles / 2; ++pair) {
                  Value bFrag = nvgpu::LdMatrixOp::create(
                      kb, fragmentType(4), id.workgroup[1 + p],
                      ValueRange{stage, k.addi(bRow, k.index(pair * 16)),
                                 k.addi(bCol, kOff)},
                      kb.getBoolAttr(false), kb.getI32IntegerAttr(4));
                  for (int64_t half = 0; half < 2; ++half) {
                    int64_t slot = p * nTiles + pair * 2 + half;
                    SmallVector<Value> bRegs = {
                        mmaRegister(k, bFrag, half * 2),
                        mmaRegister(k, bFrag, half * 2 + 1)};
                    SmallVector<Value> d =
                        mmaSync(k, mmaType, aRegs, bRegs,
                                ArrayRef<Value>(accOut).slice(slot * 4, 4));
                    llvm::copy(d, accOut.begin() + slot * 4);
                  }
                }
            }
            // The next iteration's copies overwrite this stage.
            gpu::BarrierOp::create(kb);
            return accOut;
          });

      emitFragmentEpilogue(k, gemm, tile, acc, frag, colBase);
    });
  };
  launch(b, gemm.name, gridX, gridY, kTcThreads, 1, body, sharedTypes);
}

//===----------------------------------------------------------------------===//
// SIMT: 8 rows x (threads) columns per block
//===----------------------------------------------------------------------===//

constexpr int64_t kSimtTileRows = 8;

void emitSimtGemm(ImplicitLocOpBuilder &b, const GroupedGemm &gemm,
                  Type computeType, int64_t threads) {
  KernelEmitter e(b);
  Value numRows = e.dim(gemm.a, 0);
  Value gridX = tileGridSize(e, numRows, kSimtTileRows, gemm.numExperts);
  Value gridY = e.index(llvm::divideCeil(gemm.numCols, threads));
  int64_t numProducts = gemm.products.size();

  launch(b, gemm.name, gridX, gridY, threads, 1,
         [&](KernelEmitter &k, const LaunchIds &id) {
           Tile tile = findTile(k, gemm.offsets, gemm.numExperts, numRows,
                                kSimtTileRows, id.blockX);
           Value cJ = k.index(gemm.numCols);
           Value j = k.addi(k.muli(id.blockY, id.blockDimX), id.threadX);
           Value live = k.land(k.cmpi(arith::CmpIPredicate::ult, tile.expert,
                                      k.index(gemm.numExperts)),
                               k.cmpi(arith::CmpIPredicate::ult, j, cJ));
           k.ifThen(live, [&] {
             Value zero = k.f(computeType, 0.0);
             SmallVector<Value> weightRows;
             for (const Product &p : gemm.products)
               weightRows.push_back(p.row(k, j));
             // rows x products accumulators; each weight element is loaded once
             // per K step and reused for the tile's rows.
             SmallVector<Value> init(kSimtTileRows * numProducts, zero);
             SmallVector<Value> safeRows, validRows;
             for (int64_t r = 0; r < kSimtTileRows; ++r) {
               Value row = k.addi(tile.rowStart, k.index(r));
               validRows.push_back(
                   k.cmpi(arith::CmpIPredicate::ult, row, tile.rowEnd));
               safeRows.push_back(clampIndex(k, row, numRows));
             }
             SmallVector<Value> acc = k.loop(
                 k.index(0), k.index(gemm.depth), init,
                 [&](Value kk, ValueRange accIn) {
                   SmallVector<Value> out(accIn.begin(), accIn.end());
                   SmallVector<Value> w;
                   for (auto [p, prod] : llvm::enumerate(gemm.products))
                     w.push_back(k.castFloat(
                         k.load(prod.weights, {tile.expert, weightRows[p], kk}),
                         computeType));
                   for (int64_t r = 0; r < kSimtTileRows; ++r) {
                     Value x = loadOrZero(k, gemm.a, {safeRows[r], kk},
                                          validRows[r], computeType);
                     for (int64_t p = 0; p < numProducts; ++p)
                       out[r * numProducts + p] =
                           k.addf(out[r * numProducts + p], k.mulf(x, w[p]));
                   }
                   return out;
                 });
             for (int64_t r = 0; r < kSimtTileRows; ++r)
               k.ifThen(validRows[r], [&] {
                 SmallVector<Value> values;
                 for (auto [p, prod] : llvm::enumerate(gemm.products)) {
                   Value v = acc[r * numProducts + p];
                   if (prod.bias)
                     v = k.addf(
                         v, k.castFloat(
                                k.load(prod.bias, {tile.expert, weightRows[p]}),
                                computeType));
                   values.push_back(v);
                 }
                 gemm.epilogue(k, safeRows[r], j, values);
               });
           });
         });
}

} // namespace

LogicalResult gpu_kernels::emitExpertKernels(ImplicitLocOpBuilder &b,
                                             ExpertOp expert,
                                             const ExpertBuffers &buf,
                                             const ExpertKernelOptions &opts) {
  KernelEmitter e(b);
  auto fc1Type = expert.getFc1().getType();
  auto fc2Type = expert.getFc2().getType();
  int64_t numExperts = fc1Type.getDimSize(0);
  int64_t inter = fc2Type.getDimSize(2);
  int64_t hidden = fc2Type.getDimSize(1);
  int64_t fc1Depth = fc1Type.getDimSize(2);
  if (ShapedType::isDynamic(numExperts) || ShapedType::isDynamic(inter) ||
      ShapedType::isDynamic(hidden) || ShapedType::isDynamic(fc1Depth))
    return expert.emitError("the cuda target needs static weight shapes");

  Type rowType = expert.getRows().getType().getElementType();
  Type weightType = fc1Type.getElementType();
  bool tensorCores =
      opts.tensorCores && (weightType.isF16() || weightType.isBF16());
  Type ct = computeTypeFor(rowType);
  // The activation is stored in the multiplicand type on the tensor-core
  // path (it is the A operand of the second GEMM) and in the compute type
  // otherwise.
  Type actType = tensorCores ? weightType : ct;
  Value numRows = e.dim(buf.rows, 0);
  Value act = memref::AllocOp::create(
      b, MemRefType::get({ShapedType::kDynamic, inter}, actType),
      ValueRange{numRows});

  auto run = [&](const GroupedGemm &gemm) {
    if (tensorCores && opts.sharedMemoryStages && canStageInSharedMemory(gemm))
      emitStagedTensorCoreGemm(b, gemm, weightType, opts.testMisplaceFragment);
    else if (tensorCores)
      emitTensorCoreGemm(b, gemm, weightType, opts.testMisplaceFragment);
    else
      emitSimtGemm(b, gemm, ct, opts.threadsPerBlock);
  };

  GroupedGemm first;
  first.name = tensorCores ? "moe_expert_up_mma" : "moe_expert_up";
  first.a = buf.rows;
  first.offsets = buf.offsets;
  first.numExperts = numExperts;
  first.depth = fc1Depth;
  first.numCols = inter;
  first.products = firstGemmProducts(expert, buf, inter);
  first.epilogue = [&](KernelEmitter &k, Value r, Value j, ArrayRef<Value> v) {
    Value gate = k.castFloat(v[0], ct);
    Value linear = v.size() > 1 ? k.castFloat(v[1], ct) : Value();
    k.store(k.castFloat(emitActivation(k, expert, gate, linear), actType), act,
            {r, j});
  };
  run(first);

  GroupedGemm second;
  second.name = tensorCores ? "moe_expert_down_mma" : "moe_expert_down";
  second.a = act;
  second.offsets = buf.offsets;
  second.numExperts = numExperts;
  second.depth = inter;
  second.numCols = hidden;
  second.products = {Product{buf.fc2, buf.fc2Bias,
                             [](KernelEmitter &, Value j) { return j; }}};
  Value result = buf.result;
  second.epilogue = [&](KernelEmitter &k, Value r, Value j, ArrayRef<Value> v) {
    k.store(k.castFloat(v[0], rowType), result, {r, j});
  };
  run(second);

  // Rows no expert owns (padding from offsets[E] on) are zero.
  int64_t threads = opts.threadsPerBlock;
  Value offsets = buf.offsets;
  launchPerElement(b, "moe_expert_padding", numRows, e.index(hidden), threads,
                   [&](KernelEmitter &k, Value r, Value h) {
                     Value used = arith::MaxSIOp::create(
                         k.builder(),
                         k.toIndex(k.load(offsets, k.index(numExperts))),
                         k.index(0));
                     k.ifThen(k.cmpi(arith::CmpIPredicate::sge, r, used), [&] {
                       k.store(k.f(rowType, 0.0), result, {r, h});
                     });
                   });
  return success();
}
