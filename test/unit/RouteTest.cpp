//===- RouteTest.cpp - moe::reference::route against hand-computed cases --===//

#include "TestUtil.h"

#include <cmath>
#include <limits>

using namespace moe::reference;
using namespace moe::test;

namespace {

/// Logits whose softmax is exactly `probs` (probs sum to 1): log(p).
std::vector<double> logOf(std::initializer_list<double> probs) {
  std::vector<double> out;
  for (double p : probs)
    out.push_back(std::log(p));
  return out;
}

/// Logits whose sigmoid is `p`: logit(p) = log(p / (1 - p)).
std::vector<double> logitOf(std::initializer_list<double> probs) {
  std::vector<double> out;
  for (double p : probs)
    out.push_back(std::log(p / (1.0 - p)));
  return out;
}

Tensor rows(std::vector<std::vector<double>> r) {
  Tensor t;
  t.shape = {static_cast<int64_t>(r.size()),
             static_cast<int64_t>(r.empty() ? 0 : r[0].size())};
  for (auto &row : r)
    t.data.insert(t.data.end(), row.begin(), row.end());
  return t;
}

RouteOptions opts(int64_t k, Scoring scoring, bool normalize) {
  RouteOptions o;
  o.k = k;
  o.scoring = scoring;
  o.normalize = normalize;
  return o;
}

// Token 0: softmax = [0.1, 0.2, 0.3, 0.4]; token 1: [0.25, 0.125, 0.125, 0.5].
Tensor twoTokens() {
  return rows({logOf({0.1, 0.2, 0.3, 0.4}), logOf({0.25, 0.125, 0.125, 0.5})});
}

} // namespace

TEST(Route, SoftmaxTopKWithoutNormalize) {
  // Weights are the full-softmax probabilities of the two best experts.
  RouteResult r = route(twoTokens(), nullptr, opts(2, Scoring::Softmax, false));
  expectEq(r.ids, imat({{3, 2}, {3, 0}}));
  expectNear(r.weights, dmat({{0.4, 0.3}, {0.5, 0.25}}));
}

TEST(Route, SoftmaxNormalize) {
  // 0.4 / 0.7, 0.3 / 0.7 and 0.5 / 0.75, 0.25 / 0.75.
  RouteResult r = route(twoTokens(), nullptr, opts(2, Scoring::Softmax, true));
  expectEq(r.ids, imat({{3, 2}, {3, 0}}));
  expectNear(r.weights, dmat({{4.0 / 7, 3.0 / 7}, {2.0 / 3, 1.0 / 3}}));
}

TEST(Route, SigmoidScoresAndScaling) {
  // sigmoid(logits) = [0.5, 0.75, 0.25, 0.9]; top-2 = experts 3, 1.
  Tensor logits = rows({logitOf({0.5, 0.75, 0.25, 0.9})});
  RouteResult r = route(logits, nullptr, opts(2, Scoring::Sigmoid, false));
  expectEq(r.ids, imat({{3, 1}}));
  expectNear(r.weights, dmat({{0.9, 0.75}}));

  // Normalised: 0.9 / 1.65 = 6/11, 0.75 / 1.65 = 5/11; then scaled by 2.5.
  RouteOptions o = opts(2, Scoring::Sigmoid, true);
  o.scaling = 2.5;
  r = route(logits, nullptr, o);
  expectNear(r.weights, dmat({{15.0 / 11, 12.5 / 11}}));
}

TEST(Route, ScalingWithoutNormalize) {
  RouteOptions o = opts(1, Scoring::Softmax, false);
  o.scaling = 3.0;
  RouteResult r = route(twoTokens(), nullptr, o);
  expectEq(r.ids, imat({{3}, {3}}));
  expectNear(r.weights, dmat({{1.2}, {1.5}}));
}

TEST(Route, SoftmaxTopKSelectsOnRawLogits) {
  // Raw logits [log 3, -5, 0, -2]: best two are experts 0 and 2; weights are
  // softmax([log 3, 0]) = [3/4, 1/4], independent of the other logits.
  Tensor logits = rows({{std::log(3.0), -5.0, 0.0, -2.0}});
  for (bool normalize : {false, true}) {
    RouteResult r =
        route(logits, nullptr, opts(2, Scoring::SoftmaxTopK, normalize));
    expectEq(r.ids, imat({{0, 2}}));
    expectNear(r.weights, dmat({{0.75, 0.25}}));
  }
  // With k = 1 the single weight is softmax over one logit = 1.
  RouteResult r = route(logits, nullptr, opts(1, Scoring::SoftmaxTopK, false));
  expectNear(r.weights, dmat({{1.0}}));
}

TEST(Route, BiasSteersSelectionOnly) {
  // s = [0.1, 0.2, 0.3, 0.4], bias [0.35, 0, 0, 0] -> sel = [0.45, 0.2, 0.3,
  // 0.4]: experts 0 and 3 are chosen, but weights come from s.
  Tensor logits = rows({logOf({0.1, 0.2, 0.3, 0.4})});
  Tensor bias = dvec({0.35, 0.0, 0.0, 0.0});
  RouteResult r = route(logits, &bias, opts(2, Scoring::Softmax, false));
  expectEq(r.ids, imat({{0, 3}}));
  expectNear(r.weights, dmat({{0.1, 0.4}}));
  r = route(logits, &bias, opts(2, Scoring::Softmax, true));
  expectNear(r.weights, dmat({{0.2, 0.8}}));
}

TEST(Route, SigmoidWithNegativeBias) {
  // DeepSeek-V3 style: s = [0.9, 0.75, 0.25, 0.5], bias [-0.5, 0, 0, 0]
  // -> sel = [0.4, 0.75, 0.25, 0.5]: experts 1, 3; weights 0.75, 0.5.
  Tensor logits = rows({logitOf({0.9, 0.75, 0.25, 0.5})});
  Tensor bias = dvec({-0.5, 0.0, 0.0, 0.0});
  RouteResult r = route(logits, &bias, opts(2, Scoring::Sigmoid, true));
  expectEq(r.ids, imat({{1, 3}}));
  expectNear(r.weights, dmat({{0.6, 0.4}}));
}

// Six experts in three groups {0,1} {2,3} {4,5};
// s = [0.9, 0.1, 0.6, 0.55, 0.8, 0.7].
Tensor groupedLogits() {
  return rows({logitOf({0.9, 0.1, 0.6, 0.55, 0.8, 0.7})});
}

TEST(Route, GroupLimitedMax) {
  // Group maxima 0.9, 0.6, 0.8 -> keep groups 0 and 2 -> top-2 of
  // {0.9, 0.1, 0.8, 0.7} = experts 0, 4.
  RouteOptions o = opts(2, Scoring::Sigmoid, false);
  o.numGroups = 3;
  o.topGroups = 2;
  o.groupScoring = GroupScoring::Max;
  RouteResult r = route(groupedLogits(), nullptr, o);
  expectEq(r.ids, imat({{0, 4}}));
  expectNear(r.weights, dmat({{0.9, 0.8}}));
}

TEST(Route, GroupLimitedTop2Sum) {
  // Group top-2 sums 1.0, 1.15, 1.5 -> keep groups 2 and 1 -> top-2 of
  // {0.6, 0.55, 0.8, 0.7} = experts 4, 5. Expert 0 (best overall) is out.
  RouteOptions o = opts(2, Scoring::Sigmoid, false);
  o.numGroups = 3;
  o.topGroups = 2;
  o.groupScoring = GroupScoring::Top2Sum;
  RouteResult r = route(groupedLogits(), nullptr, o);
  expectEq(r.ids, imat({{4, 5}}));
  expectNear(r.weights, dmat({{0.8, 0.7}}));

  // One group only: group 2 -> experts 4, 5 as well; k = 3 is impossible.
  o.topGroups = 1;
  r = route(groupedLogits(), nullptr, o);
  expectEq(r.ids, imat({{4, 5}}));
  o.k = 3;
  expectInvalid([&] { route(groupedLogits(), nullptr, o); }, "selectable");
}

TEST(Route, GroupLimitUsesBiasedScores) {
  // bias +0.5 on expert 3 -> sel = [0.9, 0.1, 0.6, 1.05, 0.8, 0.7]; group
  // maxima 0.9, 1.05, 0.8 -> keep group 1 only -> experts 3, 2 with weights
  // from s: 0.55, 0.6.
  Tensor bias = dvec({0, 0, 0, 0.5, 0, 0});
  RouteOptions o = opts(2, Scoring::Sigmoid, false);
  o.numGroups = 3;
  o.topGroups = 1;
  RouteResult r = route(groupedLogits(), &bias, o);
  expectEq(r.ids, imat({{3, 2}}));
  expectNear(r.weights, dmat({{0.55, 0.6}}));
}

TEST(Route, GroupTiesPickLowerGroup) {
  // All four scores equal: both groups tie, group 0 wins, then experts 0, 1.
  RouteOptions o = opts(2, Scoring::Softmax, false);
  o.numGroups = 2;
  o.topGroups = 1;
  RouteResult r = route(rows({{0, 0, 0, 0}}), nullptr, o);
  expectEq(r.ids, imat({{0, 1}}));
  expectNear(r.weights, dmat({{0.25, 0.25}}));
}

TEST(Route, TopKTiesPickLowerExpertIndex) {
  // Token 0: all equal -> experts 0, 1. Token 1: experts 1 and 2 tie for
  // first -> 1 then 2. Token 2: 3 beats the tied 0 and 2 -> 3, then 0.
  Tensor logits = rows({{0, 0, 0, 0}, {0, 1, 1, 0}, {5, 1, 5, 6}});
  RouteResult r = route(logits, nullptr, opts(2, Scoring::SoftmaxTopK, false));
  expectEq(r.ids, imat({{0, 1}, {1, 2}, {3, 0}}));
  // Token 2: softmax([6, 5]) = [e/(e+1), 1/(e+1)].
  const double e = std::exp(1.0);
  expectNear(r.weights,
             dmat({{0.5, 0.5}, {0.5, 0.5}, {e / (e + 1), 1 / (e + 1)}}));
}

TEST(Route, KEqualsNumExperts) {
  // Every expert is chosen, in descending score order.
  Tensor logits = rows({logOf({0.1, 0.2, 0.3, 0.4})});
  RouteResult r = route(logits, nullptr, opts(4, Scoring::Softmax, true));
  expectEq(r.ids, imat({{3, 2, 1, 0}}));
  expectNear(r.weights, dmat({{0.4, 0.3, 0.2, 0.1}}));
}

TEST(Route, TopPKeepsSlotThatReachesP) {
  // Token 0: weights 0.4, 0.3, 0.2 with p = 0.6: slot 0 (before 0), slot 1
  // (before 0.4 < 0.6) kept; slot 2 (before 0.7) emptied.
  // Token 1: s = [0.7, 0.05, 0.15, 0.1]: the first expert alone reaches p,
  // so slots 1 and 2 are emptied.
  Tensor logits =
      rows({logOf({0.1, 0.2, 0.3, 0.4}), logOf({0.7, 0.05, 0.15, 0.1})});
  RouteOptions o = opts(3, Scoring::Softmax, false);
  o.topP = 0.6;
  RouteResult r = route(logits, nullptr, o);
  expectEq(r.ids, imat({{3, 2, -1}, {0, -1, -1}}));
  expectNear(r.weights, dmat({{0.4, 0.3, 0.0}, {0.7, 0.0, 0.0}}));

  // Renormalised over kept slots, then scaled.
  o.normalize = true;
  o.scaling = 2.0;
  r = route(logits, nullptr, o);
  expectEq(r.ids, imat({{3, 2, -1}, {0, -1, -1}}));
  expectNear(r.weights, dmat({{8.0 / 7, 6.0 / 7, 0.0}, {2.0, 0.0, 0.0}}));
}

TEST(Route, TopPBoundaryIsStrict) {
  // sigmoid(0) = 0.5 exactly. With p = 0.5 the first slot reaches p, so the
  // second is emptied; with p slightly above 0.5 it is kept.
  Tensor logits = rows({{0.0, -1.0, -2.0}});
  RouteOptions o = opts(2, Scoring::Sigmoid, false);
  o.topP = 0.5;
  RouteResult r = route(logits, nullptr, o);
  expectEq(r.ids, imat({{0, -1}}));
  expectNear(r.weights, dmat({{0.5, 0.0}}));
  o.topP = 0.5000001;
  r = route(logits, nullptr, o);
  expectEq(r.ids, imat({{0, 1}}));
  expectNear(r.weights, dmat({{0.5, 1.0 / (1.0 + std::exp(1.0))}}));
}

TEST(Route, TopPWithSoftmaxTopK) {
  // Chosen logits [log 3, 0] -> weights [0.75, 0.25]; p = 0.7 keeps only the
  // first; normalize makes it 1.
  Tensor logits = rows({{std::log(3.0), -5.0, 0.0}});
  RouteOptions o = opts(2, Scoring::SoftmaxTopK, true);
  o.topP = 0.7;
  RouteResult r = route(logits, nullptr, o);
  expectEq(r.ids, imat({{0, -1}}));
  expectNear(r.weights, dmat({{1.0, 0.0}}));
}

TEST(Route, ZeroTokens) {
  Tensor logits({0, 4}, {});
  RouteResult r = route(logits, nullptr, opts(2, Scoring::Softmax, true));
  EXPECT_EQ(r.ids.shape, (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(r.weights.data.empty());
}

TEST(Route, RejectsBadInput) {
  Tensor logits = twoTokens();
  expectInvalid([&] { route(logits, nullptr, opts(0, Scoring::Softmax, false)); },
                "k = 0");
  expectInvalid([&] { route(logits, nullptr, opts(5, Scoring::Softmax, false)); },
                "k = 5 must be in [1, 4]");
  expectInvalid(
      [&] { route(dvec({1, 2}), nullptr, opts(1, Scoring::Softmax, false)); },
      "logits must have rank 2");
  Tensor shortBias = dvec({0, 0, 0});
  expectInvalid(
      [&] { route(logits, &shortBias, opts(1, Scoring::Softmax, false)); },
      "bias must have shape [4]");
  Tensor nan = logits;
  nan.data[3] = std::numeric_limits<double>::quiet_NaN();
  expectInvalid([&] { route(nan, nullptr, opts(1, Scoring::Softmax, false)); },
                "non-finite");
  Tensor inconsistent = logits;
  inconsistent.data.pop_back();
  expectInvalid(
      [&] { route(inconsistent, nullptr, opts(1, Scoring::Softmax, false)); },
      "7 elements");

  RouteOptions o = opts(1, Scoring::Softmax, false);
  o.numGroups = 3; // does not divide 4
  expectInvalid([&] { route(logits, nullptr, o); }, "divide");
  o.numGroups = 2;
  o.topGroups = 3;
  expectInvalid([&] { route(logits, nullptr, o); }, "top_groups");
  o.numGroups = 4;
  o.topGroups = 2;
  o.groupScoring = GroupScoring::Top2Sum; // one expert per group
  expectInvalid([&] { route(logits, nullptr, o); }, "top2_sum");

  o = opts(1, Scoring::Softmax, false);
  o.topP = 0.0;
  expectInvalid([&] { route(logits, nullptr, o); }, "top_p");
  o.topP = std::nullopt;
  o.scaling = std::numeric_limits<double>::infinity();
  expectInvalid([&] { route(logits, nullptr, o); }, "scaling");
}

TEST(Tensor, ConstructionAndAccess) {
  Tensor t({2, 3}, {0, 1, 2, 3, 4, 5});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t(1, 2), 5.0);
  t(0, 1) = 7.0;
  EXPECT_EQ(t.data[1], 7.0);
  EXPECT_THROW(t(2, 0), std::out_of_range);
  EXPECT_THROW(t(0), std::out_of_range);
  EXPECT_THROW(Tensor({2, 3}, {1, 2}), std::invalid_argument);
  EXPECT_THROW(Tensor::zeros({-1}), std::invalid_argument);
  IntTensor s = IntTensor::filled({2}, -1);
  EXPECT_EQ(s.data, (std::vector<int64_t>{-1, -1}));
  EXPECT_EQ(Tensor({}, {4.0}).numel(), 1); // rank 0
}

TEST(Route, SparseMixerSoftmaxOverJitterBand) {
  // Slot 0: m = 2 (expert 0); the band m - x <= 0.02 * max(|x|, m) holds
  // expert 1 (2 - 1.99 = 0.01 <= 0.04) but not 0.0 or 1.0, so
  // w0 = 1 / (1 + e^-0.01). Slot 1: m = 1.99 (expert 1), expert 0 left
  // out, nobody else in band: w1 = 1.
  Tensor logits = rows({{2.0, 1.99, 0.0, 1.0},
                        // Negative logits: the band scales with |x|.
                        // Slot 0: m = -1 holds -1.01 (0.01 <= 0.0202) and
                        // -1.0005; slot 1: m = -1.0005 (expert 3) holds
                        // -1.01 (0.0095 <= 0.0202).
                        {-1.0, -1.01, -3.0, -1.0005}});
  RouteResult r = route(logits, nullptr, opts(2, Scoring::SparseMixer, false));
  expectEq(r.ids, imat({{0, 1}, {0, 3}}));
  expectNear(r.weights,
             dmat({{1.0 / (1.0 + std::exp(-0.01)), 1.0},
                   {1.0 / (1.0 + std::exp(-0.01) + std::exp(-0.0005)),
                    1.0 / (1.0 + std::exp(-0.0095))}}));
}

TEST(Route, SparseMixerNeedsTopTwo) {
  Tensor logits = rows({{2.0, 1.99, 0.0, 1.0}});
  EXPECT_THROW(route(logits, nullptr, opts(3, Scoring::SparseMixer, false)),
               std::invalid_argument);
}
