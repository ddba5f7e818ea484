//===- LayerTest.cpp - moe::reference::layer, hand-computed ---------------===//

#include "TestUtil.h"

#include <cmath>

using namespace moe::reference;
using namespace moe::test;

namespace {

// H = 2, I = 1, relu, no biases.
//   expert 0: fc1 [[1, 0]], fc2 [[1], [1]]  -> y = [relu(x0), relu(x0)]
//   expert 1: fc1 [[0, 1]], fc2 [[2], [0]]  -> y = [2 relu(x1), 0]
// Zero expert 2 is a copy expert.
LayerWeights weightsE2() {
  LayerWeights w;
  w.experts.fc1 = stack({dmat({{1, 0}}), dmat({{0, 1}})});
  w.experts.fc2 = stack({dmat({{1}, {1}}), dmat({{2}, {0}})});
  return w;
}

Tensor tokens() { return dmat({{1, 2}, {-1, 1}}); }

// t0: softmax = [0.5, 0.3, 0.2] -> experts 0, 1 with [0.5, 0.3] -> [5/8, 3/8]
// t1: softmax = [0.1, 0.3, 0.6] -> copy, expert 1 with [0.6, 0.3] -> [2/3, 1/3]
Tensor logits() {
  return dmat({{std::log(0.5), std::log(0.3), std::log(0.2)},
               {std::log(0.1), std::log(0.3), std::log(0.6)}});
}

LayerOptions options() {
  LayerOptions o;
  o.route.k = 2;
  o.route.scoring = Scoring::Softmax;
  o.route.normalize = true;
  o.expert.activation = Activation::Relu;
  o.zeroExperts = {ZeroExpert::Copy};
  return o;
}

} // namespace

TEST(Layer, RoutedAndCopyExperts) {
  // t0 = 5/8 [1, 1] + 3/8 [4, 0]      = [2.125, 0.625]
  // t1 = 2/3 [-1, 1] + 1/3 [2, 0]     = [0, 2/3]
  Tensor out = layer(tokens(), logits(), weightsE2(), options());
  expectNear(out, dmat({{2.125, 0.625}, {0, 2.0 / 3}}));
}

TEST(Layer, SharedExpertsAreSummed) {
  // Shared 0: fc1 [[1, 1]], fc2 [[1], [-1]]: t0 relu(3) -> [3, -3]; t1 -> 0.
  // Shared 1: fc1 [[-1, 0]], fc2 [[0], [1]]: t0 relu(-1) = 0; t1 -> [0, 1].
  LayerWeights w = weightsE2();
  ExpertWeights shared;
  shared.fc1 = stack({dmat({{1, 1}}), dmat({{-1, 0}})});
  shared.fc2 = stack({dmat({{1}, {-1}}), dmat({{0}, {1}})});
  w.shared = shared;
  Tensor out = layer(tokens(), logits(), w, options());
  expectNear(out, dmat({{5.125, -2.375}, {0, 5.0 / 3}}));

  // With gate [1, 0]: sigmoid(x0) scales the shared sum: t0 sigmoid(1),
  // t1 sigmoid(-1).
  w.sharedGate = dvec({1, 0});
  out = layer(tokens(), logits(), w, options());
  const double s0 = 1 / (1 + std::exp(-1.0)), s1 = 1 - s0;
  expectNear(out, dmat({{2.125 + 3 * s0, 0.625 - 3 * s0},
                        {0, 2.0 / 3 + s1}}));
}

TEST(Layer, AllTokensToZeroExperts) {
  // k = 1 and the zero expert (id 2) has the largest logit for every token:
  // nothing is dispatched and the output is 0.
  LayerOptions o = options();
  o.route.k = 1;
  o.zeroExperts = {ZeroExpert::Zero};
  Tensor l = dmat({{0, 0, 5}, {-1, 1, 2}});
  Tensor out = layer(tokens(), l, weightsE2(), o);
  expectNear(out, dmat({{0, 0}, {0, 0}}));
}

TEST(Layer, CapacityDropsSecondChoices) {
  // c = 0.5: C = ceil(0.5 * 4 / 2) = 1. Slot 0: t0 -> e0 admitted, t1 ->
  // copy. Slot 1: t0 -> e1 admitted, t1 -> e1 dropped (e1 full).
  //   t0 = [2.125, 0.625] as before; t1 = 2/3 [-1, 1] = [-2/3, 2/3].
  LayerOptions o = options();
  o.capacityFactor = 0.5;
  Tensor out = layer(tokens(), logits(), weightsE2(), o);
  expectNear(out, dmat({{2.125, 0.625}, {-2.0 / 3, 2.0 / 3}}));
}

TEST(Layer, MatchesStageComposition) {
  // Every feature at once (bias, groups, top-p, capacity, constant and copy
  // experts, shared expert with gate, GLU): layer == the four stages run by
  // hand with the same operands.
  const int64_t T = 5, H = 3, I = 2, E = 4;
  auto fill = [](std::vector<int64_t> shape, double seed) {
    Tensor t = Tensor::zeros(std::move(shape));
    for (size_t i = 0; i < t.data.size(); ++i)
      t.data[i] = std::sin(seed + 0.7 * static_cast<double>(i));
    return t;
  };
  Tensor x = fill({T, H}, 1), logits = fill({T, E + 2}, 2);
  LayerWeights w;
  w.experts.fc1 = fill({E, I, H}, 3);
  w.experts.fc1Bias = fill({E, I}, 4);
  w.experts.fc2 = fill({E, H, I}, 5);
  w.experts.fc2Bias = fill({E, H}, 6);
  w.experts.fc3 = fill({E, I, H}, 7);
  w.routerBias = fill({E + 2}, 8);
  ExpertWeights shared;
  shared.fc1 = fill({1, I, H}, 9);
  shared.fc2 = fill({1, H, I}, 10);
  shared.fc3 = fill({1, I, H}, 11);
  w.shared = shared;
  w.sharedGate = fill({H}, 12);
  w.constants = fill({1, H}, 13);
  w.constantGates = fill({1, 2, H}, 14);
  LayerOptions o;
  o.route.k = 3;
  o.route.scoring = Scoring::Sigmoid;
  o.route.normalize = true;
  o.route.numGroups = 3;
  o.route.topGroups = 2;
  o.route.groupScoring = GroupScoring::Top2Sum;
  o.route.topP = 0.9;
  o.route.scaling = 1.5;
  o.expert.activation = Activation::Silu;
  o.capacityFactor = 0.8;
  o.zeroExperts = {ZeroExpert::Constant, ZeroExpert::Copy};

  RouteResult r = route(logits, &*w.routerBias, o.route);
  DispatchResult d = dispatch(x, r.ids, E, o.capacityFactor);
  Tensor y = expert(d.rows, d.offsets, w.experts, o.expert);
  Tensor sharedOut = expert(x, ivec({0, T}), shared, o.expert);
  CombineOperands ops;
  ops.input = &x;
  ops.shared = &sharedOut;
  ops.sharedGate = &*w.sharedGate;
  ops.constants = &*w.constants;
  ops.constantGates = &*w.constantGates;
  Tensor expected =
      combine(y, r.weights, r.ids, d.slotRows, E, o.zeroExperts, ops);
  expectNear(layer(x, logits, w, o), expected, 0.0);
}

TEST(Layer, RejectsBadInput) {
  LayerOptions o = options();
  expectInvalid([&] { layer(tokens(), dmat({{0, 0}, {0, 0}}), weightsE2(), o); },
                "logits must have shape [2, 3]");
  LayerWeights w = weightsE2();
  w.sharedGate = dvec({1, 1});
  expectInvalid([&] { layer(tokens(), logits(), w, o); },
                "shared gate given without shared");
  o.route.k = 4;
  expectInvalid([&] { layer(tokens(), logits(), weightsE2(), o); },
                "k = 4 must be in [1, 3]");
}
