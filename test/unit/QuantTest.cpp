//===- QuantTest.cpp - moe::reference::dequantize, hand-computed ----------===//
//
// Tiny quantised weights whose dequantised values are worked out by hand,
// one test per layout rule of MoE.md ("Quantised weights").
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

using namespace moe::reference;
using namespace moe::test;

namespace {

ByteTensor bytes(std::vector<int64_t> shape, std::vector<uint8_t> data) {
  return ByteTensor(std::move(shape), std::move(data));
}

Quantization quant(int64_t bits, int64_t blockSize = 0) {
  Quantization q;
  q.bits = bits;
  q.blockSize = blockSize;
  return q;
}

// 8-bit, per row, default zero point 128:
//   row 0: (130 - 128) * 0.5 = 1, (128 - 128) * 0.5 = 0, (0 - 128) * 0.5 = -64
//   row 1: (255 - 128) * 2 = 254, (1 - 128) * 2 = -254, (128 - 128) * 2 = 0
TEST(Quant, Int8PerRowDefaultZeroPoint) {
  Tensor w = dequantize(bytes({1, 2, 3}, {130, 128, 0, 255, 1, 128}),
                        Tensor({1, 2}, {0.5, 2.0}), nullptr, quant(8));
  expectNear(w, Tensor({1, 2, 3}, {1, 0, -64, 254, -254, 0}));
}

// 4-bit: byte 0x3A holds column 0 (low nibble, 10) and column 1 (high, 3);
// 0xF0 holds column 2 (0) and column 3 (15). Default zero point 8, scale
// 0.25: (10-8)/4, (3-8)/4, (0-8)/4, (15-8)/4.
TEST(Quant, Int4PackingLowNibbleIsEvenColumn) {
  Tensor w = dequantize(bytes({1, 1, 2}, {0x3A, 0xF0}), Tensor({1, 1}, {0.25}),
                        nullptr, quant(4));
  expectNear(w, Tensor({1, 1, 4}, {0.5, -1.25, -2.0, 1.75}));
}

// 8-bit per-row zero points, one per row, two experts.
TEST(Quant, Int8PerRowZeroPoints) {
  ByteTensor zp = bytes({2, 1}, {10, 30});
  Tensor w = dequantize(bytes({2, 1, 2}, {10, 20, 10, 20}),
                        Tensor({2, 1}, {1.0, 0.5}), &zp, quant(8));
  expectNear(w, Tensor({2, 1, 2}, {0, 10, -10, -5}));
}

// 4-bit per-row zero points pack two rows a byte: [E, ceil(N/2)]. Rows 0
// and 1 share byte 0x42 (zp 2, then 4), row 2 has the low nibble of 0x09.
// Every weight code is 8 (bytes 0x88), scale 1.
TEST(Quant, Int4PerRowZeroPointsPackAlongRows) {
  ByteTensor zp = bytes({1, 2}, {0x42, 0x09});
  Tensor w = dequantize(bytes({1, 3, 1}, {0x88, 0x88, 0x88}),
                        Tensor({1, 3}, {1, 1, 1}), &zp, quant(4));
  expectNear(w, Tensor({1, 3, 2}, {6, 6, 4, 4, -1, -1}));
}

// 4-bit block-wise (block 16, K = 48: three blocks), zero points packed two
// blocks a byte: [E, N, ceil(3/2)] = bytes 0x51, 0x03 -> zp 1, 5, 3. Every
// code is 7 (0x77); block scales 1, 2, 0.5 give 6, 4, 2.
TEST(Quant, Int4BlockWiseZeroPointsPackAlongBlocks) {
  std::vector<uint8_t> codes(24, 0x77);
  ByteTensor zp = bytes({1, 1, 2}, {0x51, 0x03});
  Tensor w = dequantize(bytes({1, 1, 24}, codes),
                        Tensor({1, 1, 3}, {1.0, 2.0, 0.5}), &zp, quant(4, 16));
  std::vector<double> expected;
  for (double v : {6.0, 4.0, 2.0})
    expected.insert(expected.end(), 16, v);
  expectNear(w, Tensor({1, 1, 48}, expected));
}

// 8-bit block-wise with a partial last block: K = 20, block 16 -> blocks of
// 16 and 4 columns, each with its own scale and zero point.
TEST(Quant, Int8BlockWisePartialLastBlock) {
  std::vector<uint8_t> codes(20, 100);
  ByteTensor zp = bytes({1, 1, 2}, {90, 110});
  Tensor w = dequantize(bytes({1, 1, 20}, codes), Tensor({1, 1, 2}, {0.5, 3}),
                        &zp, quant(8, 16));
  std::vector<double> expected(16, 5.0);
  expected.insert(expected.end(), 4, -30.0);
  expectNear(w, Tensor({1, 1, 20}, expected));
}

// The dequantised weights drive the float expert unchanged: one expert,
// H = I = 2, identity activation, an 8-bit fc1 and a 4-bit fc2.
TEST(Quant, DequantisedWeightsFeedTheExpert) {
  ExpertWeights w;
  w.fc2 = dequantize(bytes({1, 2, 1}, {0x0C, 0x09}), Tensor({1, 2}, {0.5, 0.5}),
                     nullptr, quant(4));
  ASSERT_EQ(w.fc2.shape, (std::vector<int64_t>{1, 2, 2}));
  // fc1 = [[1, -1], [0, 0]] (codes 129, 127 and 128, 128; scale 1).
  w.fc1 = dequantize(bytes({1, 2, 2}, {129, 127, 128, 128}),
                     Tensor({1, 2}, {1.0, 1.0}), nullptr, quant(8));
  ExpertOptions o;
  o.activation = Activation::Identity;
  Tensor y = expert(dmat({{3, 1}}), ivec({0, 1}), w, o);
  // a = [2, 0]; fc2 rows: [(12-8)/2, (0-8)/2] = [2, -4], [(9-8)/2, -4] =
  // [0.5, -4]; y = [2*2 + 0*-4, 0.5*2 + 0*-4] = [4, 1].
  expectNear(y, dmat({{4, 1}}));
}

TEST(Quant, RejectsInconsistentOperands) {
  expectInvalid(
      [] {
        dequantize(bytes({1, 2, 2}, {0, 0, 0, 0}), Tensor({1, 1}, {1.0}),
                   nullptr, quant(8));
      },
      "scales");
  expectInvalid(
      [] {
        ByteTensor zp = bytes({1, 2}, {0, 0});
        dequantize(bytes({1, 2, 2}, {0, 0, 0, 0}), Tensor({1, 2}, {1, 1}), &zp,
                   quant(4));
      },
      "zero points must have shape [1, 1]");
  expectInvalid(
      [] {
        dequantize(bytes({1, 1, 1}, {0}), Tensor({1, 1}, {1.0}), nullptr,
                   quant(2));
      },
      "bits must be 4 or 8");
  expectInvalid(
      [] {
        dequantize(bytes({1, 1, 1}, {0}), Tensor({1, 1, 1}, {1.0}), nullptr,
                   quant(8, 24));
      },
      "block size");
}

} // namespace
