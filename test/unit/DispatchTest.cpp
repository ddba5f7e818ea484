//===- DispatchTest.cpp - moe::reference::dispatch, hand-computed ---------===//

#include "TestUtil.h"

#include <limits>

using namespace moe::reference;
using namespace moe::test;

namespace {

// x[t] = [t + 1, 10 (t + 1)], T = 4, H = 2.
Tensor fourTokens() { return dmat({{1, 10}, {2, 20}, {3, 30}, {4, 40}}); }

// E = 3, k = 2. Token 2's second slot is empty; token 3's second choice is
// zero-computation expert 3 (>= E), which dispatch ignores.
IntTensor fourIds() { return imat({{2, 0}, {0, 1}, {1, -1}, {0, 3}}); }

} // namespace

TEST(Dispatch, DroplessGroupsByExpertThenToken) {
  // Expert 0: (t0,j1) (t1,j0) (t3,j0) -> rows 0..2; expert 1: (t1,j1)
  // (t2,j0) -> rows 3, 4; expert 2: (t0,j0) -> row 5; rows 6, 7 padding.
  DispatchResult d = dispatch(fourTokens(), fourIds(), 3);
  expectEq(d.offsets, ivec({0, 3, 5, 6}));
  expectEq(d.rowTokens, ivec({0, 1, 3, 1, 2, 0, -1, -1}));
  expectEq(d.slotRows, imat({{5, 0}, {1, 3}, {4, -1}, {2, -1}}));
  expectNear(d.rows, dmat({{1, 10},
                           {2, 20},
                           {4, 40},
                           {2, 20},
                           {3, 30},
                           {1, 10},
                           {0, 0},
                           {0, 0}}));
}

TEST(Dispatch, CapacityDropsSlotMajorThenTokenOrder) {
  // C = ceil(0.5 * 8 / 3) = 2. Slot 0 first: t0->e2, t1->e0, t2->e1,
  // t3->e0 (e0 now full). Slot 1: t0->e0 dropped, t1->e1 admitted.
  // Survivors are stored in token order: e1 holds t1 (its 2nd choice) before
  // t2 (its 1st choice).
  DispatchResult d = dispatch(fourTokens(), fourIds(), 3, 0.5);
  expectEq(d.offsets, ivec({0, 2, 4, 5}));
  expectEq(d.rowTokens, ivec({1, 3, 1, 2, 0, -1, -1, -1}));
  expectEq(d.slotRows, imat({{4, -1}, {0, 2}, {3, -1}, {1, -1}}));
  expectNear(d.rows, dmat({{2, 20},
                           {4, 40},
                           {2, 20},
                           {3, 30},
                           {1, 10},
                           {0, 0},
                           {0, 0},
                           {0, 0}}));
}

TEST(Dispatch, CapacityOneLeavesATokenWithNoExpert) {
  // C = ceil(0.25 * 8 / 3) = 1: only the first slot-0 assignment of each
  // expert survives; token 3 (t3->e0 dropped, other slot a zero expert) is
  // dispatched nowhere.
  DispatchResult d = dispatch(fourTokens(), fourIds(), 3, 0.25);
  expectEq(d.offsets, ivec({0, 1, 2, 3}));
  expectEq(d.rowTokens, ivec({1, 2, 0, -1, -1, -1, -1, -1}));
  expectEq(d.slotRows, imat({{2, -1}, {0, -1}, {1, -1}, {-1, -1}}));
}

TEST(Dispatch, LargeCapacityIsDropless) {
  DispatchResult a = dispatch(fourTokens(), fourIds(), 3);
  DispatchResult b = dispatch(fourTokens(), fourIds(), 3, 100.0);
  expectEq(b.offsets, a.offsets);
  expectEq(b.slotRows, a.slotRows);
}

TEST(Dispatch, AllSlotsEmpty) {
  DispatchResult d = dispatch(dmat({{1, 2}, {3, 4}}), imat({{-1}, {-1}}), 2);
  expectEq(d.offsets, ivec({0, 0, 0}));
  expectEq(d.rowTokens, ivec({-1, -1}));
  expectEq(d.slotRows, imat({{-1}, {-1}}));
  expectNear(d.rows, dmat({{0, 0}, {0, 0}}));
}

TEST(Dispatch, AllSlotsZeroExperts) {
  // ids 2 and 3 are zero-computation experts for E = 2: nothing dispatched.
  DispatchResult d = dispatch(dmat({{1}, {2}}), imat({{2, 3}, {3, 2}}), 2);
  expectEq(d.offsets, ivec({0, 0, 0}));
  expectEq(d.slotRows, imat({{-1, -1}, {-1, -1}}));
}

TEST(Dispatch, SameTokenTwiceUsesSlotOrder) {
  DispatchResult d = dispatch(dmat({{7}}), imat({{1, 1}}), 2);
  expectEq(d.offsets, ivec({0, 0, 2}));
  expectEq(d.slotRows, imat({{0, 1}}));
  expectEq(d.rowTokens, ivec({0, 0}));
}

TEST(Dispatch, ExpertCapacityPerGroupOfTokens) {
  // C = 1 per expert in groups of 2 tokens: group {t0, t1}: slot 0 takes
  // t0->e2, t1->e0; slot 1: t0->e0 dropped (e0 full), t1->e1. Group
  // {t2, t3}: t2->e1, t3->e0 (fresh counts).
  DispatchResult d = dispatch(fourTokens(), fourIds(), 3, std::nullopt,
                              /*expertCapacity=*/1, /*groupSize=*/2);
  expectEq(d.offsets, ivec({0, 2, 4, 5}));
  expectEq(d.rowTokens, ivec({1, 3, 1, 2, 0, -1, -1, -1}));
  expectEq(d.slotRows, imat({{4, -1}, {0, 2}, {3, -1}, {1, -1}}));
  // One group of all four tokens: slot 0 admits t0->e2, t1->e0, t2->e1;
  // t3->e0 and every slot-1 choice are dropped.
  DispatchResult all = dispatch(fourTokens(), fourIds(), 3, std::nullopt, 1);
  expectEq(all.offsets, ivec({0, 1, 2, 3}));
  expectEq(all.slotRows, imat({{2, -1}, {0, -1}, {1, -1}, {-1, -1}}));
  // A last group shorter than the others (3 + 1 tokens): t3->e0 is
  // admitted in its own group.
  DispatchResult uneven =
      dispatch(fourTokens(), fourIds(), 3, std::nullopt, 1, 3);
  expectEq(uneven.slotRows, imat({{3, -1}, {0, -1}, {2, -1}, {1, -1}}));
}

TEST(Dispatch, RejectsBadInput) {
  Tensor x = fourTokens();
  expectInvalid([&] { dispatch(x, imat({{0, -2}, {0, 0}, {0, 0}, {0, 0}}), 3); },
                "ids contains -2");
  expectInvalid([&] { dispatch(x, imat({{0, 1}}), 3); },
                "ids must have shape [4, ?]");
  expectInvalid([&] { dispatch(x, fourIds(), 0); }, "num_experts");
  expectInvalid([&] { dispatch(x, fourIds(), 3, 0.0); }, "capacity_factor");
  expectInvalid(
      [&] {
        dispatch(x, fourIds(), 3, std::numeric_limits<double>::quiet_NaN());
      },
      "capacity_factor");
  expectInvalid([&] { dispatch(dvec({1, 2}), fourIds(), 3); },
                "x must have rank 2");
  expectInvalid([&] { dispatch(x, fourIds(), 3, 1.0, 2); }, "exclusive");
  expectInvalid([&] { dispatch(x, fourIds(), 3, std::nullopt, 0); },
                "expert_capacity");
  expectInvalid([&] { dispatch(x, fourIds(), 3, std::nullopt, std::nullopt, 2); },
                "needs expert_capacity");
}
