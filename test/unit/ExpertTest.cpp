//===- ExpertTest.cpp - moe::reference::expert, hand-computed -------------===//

#include "TestUtil.h"

#include <cmath>

using namespace moe::reference;
using namespace moe::test;

namespace {

// Two experts, H = 2, I = 2, with biases.
//   fc1[0] = [[1, 2], [3, 4]], b1[0] = [0.5, -1]
//   fc2[0] = [[1, 1], [0, -1]], b2[0] = [0, 1]
//   fc1[1] = [[-1, 0], [0, 2]], b1[1] = [0, 0]
//   fc2[1] = [[2, 0], [1, 1]], b2[1] = [1, 0]
ExpertWeights twoExperts() {
  ExpertWeights w;
  w.fc1 = stack({dmat({{1, 2}, {3, 4}}), dmat({{-1, 0}, {0, 2}})});
  w.fc1Bias = dmat({{0.5, -1}, {0, 0}});
  w.fc2 = stack({dmat({{1, 1}, {0, -1}}), dmat({{2, 0}, {1, 1}})});
  w.fc2Bias = dmat({{0, 1}, {1, 0}});
  return w;
}

// Rows 0, 1 -> expert 0, row 2 -> expert 1, row 3 is padding.
Tensor fourRows() { return dmat({{1, 1}, {2, -1}, {1, 3}, {5, 5}}); }

ExpertOptions act(Activation a) {
  ExpertOptions o;
  o.activation = a;
  return o;
}

// One expert with H = I = 1 and unit weights: y = act(x).
ExpertWeights scalarExpert() {
  ExpertWeights w;
  w.fc1 = Tensor({1, 1, 1}, {1});
  w.fc2 = Tensor({1, 1, 1}, {1});
  return w;
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

} // namespace

TEST(Expert, IdentityWithBiases) {
  // r0 = [1, 1]:  a = [1+2+0.5, 3+4-1] = [3.5, 6];  y = [9.5, -6+1] = [9.5, -5]
  // r1 = [2, -1]: a = [0.5, 1];                      y = [1.5, 0]
  // r2 = [1, 3] (expert 1): a = [-1, 6];             y = [-2+1, -1+6] = [-1, 5]
  // r3: padding -> 0.
  Tensor y = expert(fourRows(), ivec({0, 2, 3}), twoExperts(),
                    act(Activation::Identity));
  expectNear(y, dmat({{9.5, -5}, {1.5, 0}, {-1, 5}, {0, 0}}));
}

TEST(Expert, Relu) {
  // Only r2 changes: h = relu([-1, 6]) = [0, 6] -> y = [1, 6].
  Tensor y = expert(fourRows(), ivec({0, 2, 3}), twoExperts(),
                    act(Activation::Relu));
  expectNear(y, dmat({{9.5, -5}, {1.5, 0}, {1, 6}, {0, 0}}));
}

TEST(Expert, EmptyExpertAndNoBias) {
  // Expert 0 gets no rows; expert 1 (no biases) gets both.
  ExpertWeights w = twoExperts();
  w.fc1Bias.reset();
  w.fc2Bias.reset();
  // r = [1, 1]: a = [-1, 2], y = [-2, 1]; r = [0, 1]: a = [0, 2], y = [0, 2].
  Tensor y = expert(dmat({{1, 1}, {0, 1}}), ivec({0, 0, 2}), w,
                    act(Activation::Identity));
  expectNear(y, dmat({{-2, 1}, {0, 2}}));
}

TEST(Expert, ElementwiseActivations) {
  // y = act(x) for x = 1, -1, 0.5 (values from the closed forms:
  // gelu(x) = x/2 (1 + erf(x/sqrt 2)), gelu_tanh with 0.7978845608 and
  // 0.044715, silu(x) = x sigmoid(x)).
  Tensor x = dmat({{1}, {-1}, {0.5}});
  IntTensor offsets = ivec({0, 3});
  struct Case {
    Activation a;
    double y1, yMinus1, yHalf;
  } cases[] = {
      {Activation::Identity, 1, -1, 0.5},
      {Activation::Relu, 1, 0, 0.5},
      {Activation::Gelu, 0.8413447460685429, -0.15865525393145707,
       0.34573123063700656},
      {Activation::GeluTanh, 0.8411919906082768, -0.15880800939172324,
       0.34571400982514394},
      {Activation::Silu, 0.7310585786300049, -0.2689414213699951,
       0.3112296656009273},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(static_cast<int>(c.a));
    Tensor y = expert(x, offsets, scalarExpert(), act(c.a));
    expectNear(y, dmat({{c.y1}, {c.yMinus1}, {c.yHalf}}));
  }
}

TEST(Expert, GatedActivationWithFc3) {
  // fc1 = 2, fc3 = 3, b3 = 1, fc2 = 1: h = act(2x) * (3x + 1).
  ExpertWeights w = scalarExpert();
  w.fc1 = Tensor({1, 1, 1}, {2});
  w.fc3 = Tensor({1, 1, 1}, {3});
  w.fc3Bias = Tensor({1, 1}, {1});
  Tensor x = dmat({{1}, {-1}});
  // silu(2) * 4 = 8 sigmoid(2); silu(-2) * -2 = 4 sigmoid(-2).
  expectNear(expert(x, ivec({0, 2}), w, act(Activation::Silu)),
             dmat({{8 * sigmoid(2)}, {4 * sigmoid(-2)}}));
  // identity: 2 * 4 = 8; -2 * -2 = 4.
  expectNear(expert(x, ivec({0, 2}), w, act(Activation::Identity)),
             dmat({{8}, {4}}));
  // relu: 8; relu(-2) * -2 = 0.
  expectNear(expert(x, ivec({0, 2}), w, act(Activation::Relu)),
             dmat({{8}, {0}}));
}

namespace {

// SwiGLU with H = 1, I = 2: fc1 output for x = 1 is `a`, fc2 = [[1, 10]] so
// y = h0 + 10 h1 tells h0 and h1 apart.
ExpertWeights swigluExpert(std::vector<double> fc1Column, int64_t rows) {
  ExpertWeights w;
  w.fc1 = Tensor({1, rows, 1}, std::move(fc1Column));
  w.fc2 = Tensor({1, 1, 2}, {1, 10});
  return w;
}

ExpertOptions swigluOpts(SwigluFusion f) {
  ExpertOptions o;
  o.activation = Activation::SwiGLU;
  o.fusion = f;
  return o;
}

} // namespace

TEST(Expert, SwigluInterleaved) {
  // a = [1, 2, 3, 4]: g = [1, 3], l = [2, 4];
  // h = [1 sig(1) 2, 3 sig(3) 4]; y = h0 + 10 h1.
  Tensor y = expert(dmat({{1}}), ivec({0, 1}), swigluExpert({1, 2, 3, 4}, 4),
                    swigluOpts(SwigluFusion::Interleaved));
  expectNear(y, dmat({{2 * sigmoid(1) + 120 * sigmoid(3)}}));
  EXPECT_NEAR(y.data[0], 115.77101237595201, 1e-12);
}

TEST(Expert, SwigluConcatenated) {
  // a = [1, 2, 3, 4]: g = [1, 2], l = [3, 4]; h = [3 sig(1), 8 sig(2)].
  Tensor y = expert(dmat({{1}}), ivec({0, 1}), swigluExpert({1, 2, 3, 4}, 4),
                    swigluOpts(SwigluFusion::Concatenated));
  EXPECT_NEAR(y.data[0], 3 * sigmoid(1) + 80 * sigmoid(2), 1e-12);
  EXPECT_NEAR(y.data[0], 72.6569419741206, 1e-12);
}

TEST(Expert, SwigluSeparateMatchesConcatenated) {
  // fc1 gives g = [1, 2], fc3 gives l = [3, 4]: same h as above.
  ExpertWeights w = swigluExpert({1, 2}, 2);
  w.fc3 = Tensor({1, 2, 1}, {3, 4});
  Tensor y = expert(dmat({{1}}), ivec({0, 1}), w,
                    swigluOpts(SwigluFusion::Separate));
  EXPECT_NEAR(y.data[0], 72.6569419741206, 1e-12);
}

TEST(Expert, SwigluAlphaBetaLimit) {
  // gpt-oss: alpha 1.702, beta 1, limit 7. a = [10, -9, 3, 8]:
  // g = [10, 3] -> G = [7, 3]; l = [-9, 8] -> L = [-7, 7].
  // h0 = 7 sig(1.702*7) (-7+1), h1 = 3 sig(1.702*3) (7+1).
  ExpertOptions o = swigluOpts(SwigluFusion::Interleaved);
  o.alpha = 1.702;
  o.beta = 1.0;
  o.limit = 7.0;
  Tensor y = expert(dmat({{1}}), ivec({0, 1}),
                    swigluExpert({10, -9, 3, 8}, 4), o);
  double h0 = 7 * sigmoid(1.702 * 7) * -6, h1 = 3 * sigmoid(1.702 * 3) * 8;
  EXPECT_NEAR(y.data[0], h0 + 10 * h1, 1e-12);
  EXPECT_NEAR(y.data[0], 196.55457645355722, 1e-12);
}

TEST(Expert, SwigluScalarClampIsOneSidedOnGate) {
  // G = min(g, limit): a very negative gate is not clamped to -limit.
  EXPECT_NEAR(swiglu(-10, 0, 1.702, 1, 7.0), -10 * sigmoid(-17.02), 1e-18);
  EXPECT_NEAR(swiglu(-10, 0, 1.702, 1, 7.0), -4.057961294855312e-07, 1e-18);
  // L is clamped on both sides; without a limit nothing is clamped.
  EXPECT_NEAR(swiglu(1, -20, 1, 0, 7.0), sigmoid(1) * -7, 1e-15);
  EXPECT_NEAR(swiglu(1, -20, 1, 0, std::nullopt), sigmoid(1) * -20, 1e-15);
  EXPECT_NEAR(swiglu(20, 1, 1, 0, std::nullopt), 20 * sigmoid(20), 1e-12);
}

TEST(Expert, RejectsBadInput) {
  ExpertWeights w = twoExperts();
  Tensor rows = fourRows();
  ExpertOptions id = act(Activation::Identity);
  expectInvalid([&] { expert(rows, ivec({0, 2}), w, id); },
                "offsets must have shape [3]");
  expectInvalid([&] { expert(rows, ivec({0, 3, 2}), w, id); },
                "non-decreasing");
  expectInvalid([&] { expert(rows, ivec({0, 2, 5}), w, id); },
                "exceeds the row count 4");
  expectInvalid([&] { expert(rows, ivec({1, 2, 3}), w, id); },
                "offsets[0] must be 0");
  expectInvalid([&] { expert(dmat({{1, 2, 3}}), ivec({0, 1, 1}), w, id); },
                "fc1 must have shape [2, 2, 3]");

  ExpertWeights bad = w;
  bad.fc2Bias = dmat({{0, 1, 2}, {1, 0, 2}});
  expectInvalid([&] { expert(rows, ivec({0, 2, 3}), bad, id); },
                "fc2 bias must have shape [2, 2]");
  bad = w;
  bad.fc3Bias = dmat({{0, 0}, {0, 0}});
  expectInvalid([&] { expert(rows, ivec({0, 2, 3}), bad, id); },
                "fc3 bias given without fc3");

  // fc1 has I rows but interleaved SwiGLU needs 2I.
  expectInvalid(
      [&] {
        expert(rows, ivec({0, 2, 3}), w,
               swigluOpts(SwigluFusion::Interleaved));
      },
      "fc1 must have shape [2, 4, 2]");
  expectInvalid(
      [&] {
        expert(rows, ivec({0, 2, 3}), w, swigluOpts(SwigluFusion::Separate));
      },
      "separate SwiGLU needs fc3");
  ExpertWeights fused = swigluExpert({1, 2, 3, 4}, 4);
  fused.fc3 = Tensor({1, 2, 1}, {3, 4});
  expectInvalid(
      [&] {
        expert(dmat({{1}}), ivec({0, 1}), fused,
               swigluOpts(SwigluFusion::Interleaved));
      },
      "fc3 is not allowed");
  ExpertOptions neg = swigluOpts(SwigluFusion::Interleaved);
  neg.limit = -1.0;
  expectInvalid(
      [&] {
        expert(dmat({{1}}), ivec({0, 1}), swigluExpert({1, 2, 3, 4}, 4), neg);
      },
      "limit");
  ExpertOptions reluLimit = act(Activation::Relu);
  reluLimit.limit = 7.0;
  expectInvalid([&] { expert(rows, ivec({0, 2, 3}), w, reluLimit); },
                "limit only applies to SwiGLU");
  EXPECT_THROW(activate(Activation::SwiGLU, 1.0), std::invalid_argument);
}
