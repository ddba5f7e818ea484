//===- OrtGoldenTest.cpp - reference layer vs ONNX Runtime's MoE ----------===//
//
// test/golden/ort-moe-swiglu/expected_output.npy is ONNX Runtime's CPU output
// for a com.microsoft.MoE node (interleaved SwiGLU, gpt-oss parameters) whose
// inputs come from a tiny integer generator. This test regenerates the same
// inputs, runs moe::reference::layer in float64 and compares. See the README
// in that folder for how the file was produced.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Reference/Reference.h"
#include "moe-mlir/Support/Npy.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>

#ifndef MOE_ORT_GOLDEN_DIR
#error "MOE_ORT_GOLDEN_DIR must name test/golden/ort-moe-swiglu"
#endif

using namespace moe::reference;

namespace {

// Shapes and generator parameters; keep in sync with make_model.py.
constexpr int64_t kBatch = 2, kSeq = 32, kT = kBatch * kSeq, kH = 64,
                  kI = 256, kE = 4, kK = 2;

/// 32-bit LCG x <- x * 1664525 + 1013904223 (mod 2^32), advanced before each
/// value; value = ((x >> 8) / 2^24 * 2 - 1) * scale = ((x >> 8) - 2^23) *
/// scale / 2^23. With scale a power of two every value is exact in float32,
/// so the C++ and Python sides see bit-identical inputs.
Tensor generate(std::vector<int64_t> shape, uint32_t seed, double scale) {
  Tensor t = Tensor::zeros(std::move(shape));
  uint32_t x = seed;
  for (double &v : t.data) {
    x = x * 1664525u + 1013904223u; // wraps mod 2^32 (unsigned)
    const int64_t u = static_cast<int64_t>(x >> 8) - (int64_t(1) << 23);
    v = static_cast<double>(u) * (scale / 8388608.0);
  }
  return t;
}

} // namespace

TEST(OrtGolden, GeneratorMatchesPython) {
  // First values for seed 1, scale 1, as printed by make_model.py's
  // lcg_values(1, 3, 1.0): x1 = 1015568748, x2 = 1586005467, x3 = 2165703038.
  Tensor t = generate({3}, 1, 1.0);
  EXPECT_EQ(t.data[0], (double(1015568748u >> 8) - 8388608.0) / 8388608.0);
  EXPECT_EQ(t.data[1], (double(1586005467u >> 8) - 8388608.0) / 8388608.0);
  EXPECT_EQ(t.data[2], (double(2165703038u >> 8) - 8388608.0) / 8388608.0);
  for (double v : generate({1000}, 7, 0.25).data) {
    EXPECT_EQ(static_cast<double>(static_cast<float>(v)), v);
    EXPECT_GE(v, -0.25);
    EXPECT_LT(v, 0.25);
  }
}

TEST(OrtGolden, SwigluInterleavedMatchesOrt) {
  const std::string path = std::string(MOE_ORT_GOLDEN_DIR) +
                           "/expected_output.npy";
  moe::npy::Array golden = moe::npy::read(path);
  ASSERT_EQ(golden.dtype, moe::npy::DType::F32);
  ASSERT_EQ(golden.shape, (std::vector<int64_t>{kBatch, kSeq, kH}));
  std::vector<double> ort = moe::npy::toDoubles(golden);

  // The ONNX input is [2, 32, 64]; the layer takes the flattened [64, 64].
  Tensor x = generate({kT, kH}, 1, 1.0);
  Tensor logits = generate({kT, kE}, 2, 2.0);
  LayerWeights w;
  w.experts.fc1 = generate({kE, 2 * kI, kH}, 3, 1.0);
  w.experts.fc1Bias = generate({kE, 2 * kI}, 4, 0.5);
  w.experts.fc2 = generate({kE, kH, kI}, 5, 0.0625);
  w.experts.fc2Bias = generate({kE, kH}, 6, 0.25);

  LayerOptions o;
  o.route.k = kK;
  o.route.scoring = Scoring::Softmax; // ORT softmaxes router_probs
  o.route.normalize = true;           // normalize_routing_weights = 1
  o.expert.activation = Activation::SwiGLU;
  o.expert.fusion = SwigluFusion::Interleaved; // swiglu_fusion = 1
  // ONNX float attributes are float32: use exactly the value ORT sees.
  o.expert.alpha = static_cast<double>(1.702f);
  o.expert.beta = 1.0;
  o.expert.limit = 7.0;

  Tensor ref = layer(x, logits, w, o);
  ASSERT_EQ(ref.data.size(), ort.size());
  double maxDiff = 0.0, maxOrt = 0.0;
  for (size_t i = 0; i < ort.size(); ++i) {
    maxDiff = std::max(maxDiff, std::abs(ref.data[i] - ort[i]));
    maxOrt = std::max(maxOrt, std::abs(ort[i]));
  }
  const double rel = maxDiff / maxOrt;
  RecordProperty("max_rel_error", std::to_string(rel));
  std::cout << "[ OrtGolden ] max|ref - ort| / max|ort| = " << rel
            << " (max|ort| = " << maxOrt << ")\n";
  EXPECT_GT(maxOrt, 1.0); // the layer is not trivially zero
  EXPECT_LE(rel, 1e-6);
}
