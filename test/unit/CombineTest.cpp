//===- CombineTest.cpp - moe::reference::combine, hand-computed -----------===//

#include "TestUtil.h"

#include <cmath>

using namespace moe::reference;
using namespace moe::test;

namespace {

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// E = 2 routed experts; zero experts: id 2 = zero, 3 = copy, 4 = constant.
const std::vector<ZeroExpert> kZeroKinds = {ZeroExpert::Zero, ZeroExpert::Copy,
                                            ZeroExpert::Constant};

// Expert output rows, T = 3 tokens, H = 2.
Tensor y() { return dmat({{1, 2}, {10, 20}, {100, 200}}); }
Tensor x() { return dmat({{1, -1}, {2, 0}, {0.5, 0.5}}); }

// t0: expert 0 (row 1, w 0.5) + copy (w 0.25)
// t1: constant (w 0.5) + expert 1 (row 0, w 1)
// t2: zero expert (w 0.7) + expert 0 dropped by capacity (row -1, w 0.3)
IntTensor ids() { return imat({{0, 3}, {4, 1}, {2, 0}}); }
IntTensor slotRows() { return imat({{1, -1}, {-1, 0}, {-1, -1}}); }
Tensor weights() { return dmat({{0.5, 0.25}, {0.5, 1.0}, {0.7, 0.3}}); }

// One constant expert: v = [4, 8]; gates [[1, 0], [0, 1]] so that
// (a1, a2) = softmax(x[t]) = softmax([2, 0]) for t1 = [sig(2), 1 - sig(2)].
Tensor constants() { return dmat({{4, 8}}); }
Tensor constantGates() { return Tensor({1, 2, 2}, {1, 0, 0, 1}); }

// Routed part of the output, by hand:
//   t0 = 0.5 [10, 20] + 0.25 [1, -1]                     = [5.25, 9.75]
//   t1 = 0.5 (a1 [2, 0] + a2 [4, 8]) + 1 [1, 2]
//      = [a1 + 2 a2 + 1, 4 a2 + 2] = [2 + a2, 2 + 4 a2]    (a1 + a2 = 1)
//   t2 = nothing                                          = [0, 0]
Tensor routedExpected() {
  const double a2 = 1 - sigmoid(2);
  return dmat({{5.25, 9.75}, {2 + a2, 2 + 4 * a2}, {0, 0}});
}

CombineOperands withConstants(const Tensor &in, const Tensor &v,
                              const Tensor &g) {
  CombineOperands ops;
  ops.input = &in;
  ops.constants = &v;
  ops.constantGates = &g;
  return ops;
}

} // namespace

TEST(Combine, RoutedCopyConstantZeroAndDropped) {
  Tensor in = x(), v = constants(), g = constantGates();
  Tensor out = combine(y(), weights(), ids(), slotRows(), 2, kZeroKinds,
                       withConstants(in, v, g));
  expectNear(out, routedExpected());
  EXPECT_NEAR(out(1, 0), 2.1192029220221177, 1e-12);
}

TEST(Combine, DroppedPassThroughKeepsTheToken) {
  // As above, but t2's dropped expert-0 slot contributes 0.3 x[t2]; empty,
  // zero-expert and dispatched slots are unchanged.
  Tensor in = x(), v = constants(), g = constantGates();
  CombineOperands ops = withConstants(in, v, g);
  ops.droppedPassThrough = true;
  Tensor out = combine(y(), weights(), ids(), slotRows(), 2, kZeroKinds, ops);
  Tensor expected = routedExpected();
  expected.data[4] = 0.3 * 0.5;
  expected.data[5] = 0.3 * 0.5;
  expectNear(out, expected);
  ops.input = nullptr;
  ops.constants = ops.constantGates = nullptr;
  expectInvalid(
      [&] {
        combine(y(), weights(), imat({{0, 1}, {1, 0}, {0, 1}}), slotRows(), 2,
                {}, ops);
      },
      "input");
}

TEST(Combine, SharedWithoutGateIsAdded) {
  Tensor in = x(), v = constants(), g = constantGates();
  Tensor shared = dmat({{1, 1}, {2, 2}, {3, 3}});
  CombineOperands ops = withConstants(in, v, g);
  ops.shared = &shared;
  Tensor out = combine(y(), weights(), ids(), slotRows(), 2, kZeroKinds, ops);
  Tensor expected = routedExpected();
  for (size_t i = 0; i < expected.data.size(); ++i)
    expected.data[i] += shared.data[i];
  expectNear(out, expected);
}

TEST(Combine, SharedGate) {
  // gate [1, 1]: sigmoid(x[t] . gate) = sigmoid(0), sigmoid(2), sigmoid(1).
  Tensor in = x(), v = constants(), g = constantGates();
  Tensor shared = dmat({{1, 1}, {2, 2}, {3, 3}});
  Tensor gate = dvec({1, 1});
  CombineOperands ops = withConstants(in, v, g);
  ops.shared = &shared;
  ops.sharedGate = &gate;
  Tensor out = combine(y(), weights(), ids(), slotRows(), 2, kZeroKinds, ops);
  const double a2 = 1 - sigmoid(2);
  const double g1 = 2 * sigmoid(2), g2 = 3 * sigmoid(1);
  expectNear(out, dmat({{5.75, 10.25},
                        {2 + a2 + g1, 2 + 4 * a2 + g1},
                        {g2, g2}}));
}

TEST(Combine, OnlyRoutedExperts) {
  // No zero experts, no input needed; empty slots contribute nothing.
  Tensor out = combine(y(), dmat({{2, 0}, {0.5, 0.5}}), imat({{1, -1}, {0, 1}}),
                       imat({{2, -1}, {1, 0}}), 2, {});
  expectNear(out, dmat({{200, 400}, {5.5, 11}}));
}

TEST(Combine, TokensWithNoExpert) {
  // Every slot empty or zero-expert: the output is exactly zero.
  Tensor out = combine(dmat({{9, 9}}), dmat({{0.5, 0.5}, {0, 0}}),
                       imat({{2, 2}, {-1, -1}}), imat({{-1, -1}, {-1, -1}}), 2,
                       {ZeroExpert::Zero});
  expectNear(out, dmat({{0, 0}, {0, 0}}));
}

TEST(Combine, RejectsBadInput) {
  Tensor in = x(), v = constants(), g = constantGates();
  CombineOperands ops = withConstants(in, v, g);
  auto call = [&](const IntTensor &i, const IntTensor &r,
                  const CombineOperands &o) {
    combine(y(), weights(), i, r, 2, kZeroKinds, o);
  };
  expectInvalid([&] { call(imat({{0, 5}, {4, 1}, {2, 0}}), slotRows(), ops); },
                "id 5 out of range [-1, 5)");
  expectInvalid([&] { call(ids(), imat({{3, -1}, {-1, 0}, {-1, -1}}), ops); },
                "slot_rows entry 3");
  expectInvalid([&] { call(ids(), imat({{1, 0}, {-1, 0}, {-1, -1}}), ops); },
                "slot_rows must be -1");
  expectInvalid([&] { call(ids(), slotRows(), {}); }, "input x is required");
  CombineOperands noConst;
  noConst.input = &in;
  expectInvalid([&] { call(ids(), slotRows(), noConst); },
                "constant experts need");
  Tensor badGates({1, 2, 3}, {0, 0, 0, 0, 0, 0});
  expectInvalid(
      [&] { call(ids(), slotRows(), withConstants(in, v, badGates)); },
      "constant gates must have shape [1, 2, 2]");
  Tensor gate = dvec({1, 1});
  CombineOperands gateOnly = ops;
  gateOnly.sharedGate = &gate;
  expectInvalid([&] { call(ids(), slotRows(), gateOnly); },
                "shared gate given without shared");
  Tensor badShared = dmat({{1, 1}});
  CombineOperands sharedOps = ops;
  sharedOps.shared = &badShared;
  expectInvalid([&] { call(ids(), slotRows(), sharedOps); },
                "shared must have shape [3, 2]");
  expectInvalid(
      [&] {
        combine(y(), weights(), imat({{0, 1}}), slotRows(), 2, kZeroKinds,
                ops);
      },
      "ids must have shape [3, 2]");
  expectInvalid(
      [&] {
        combine(y(), weights(), imat({{0, 1}, {0, 1}, {0, 1}}),
                imat({{0, 1}, {0, 1}, {0, 1}}), 2, {}, ops);
      },
      "no zero expert is constant");
}
