#include "balance/internal/packing.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

struct Packed {
  std::vector<int32_t> pack, rank;
};

Packed Pack(const std::vector<float>& keys, int packs, TieOrder tie = TieOrder::kStable,
            const std::vector<int32_t>& owner = {}) {
  Packed p{std::vector<int32_t>(keys.size()), std::vector<int32_t>(keys.size())};
  PackingScratch scratch;
  EXPECT_TRUE(BalancedPacking(keys, packs, tie, owner, p.pack.data(), p.rank.data(), &scratch));
  return p;
}

// Greedy by hand: 5 -> p0, 4 -> p1, 3 -> p1 (4 < 5), 3 -> p0 (5 < 7),
// 2 -> p1 (7 < 8), 1 -> p0 (the only pack with room).
TEST(BalancedPackingTest, GreedyWithCardinality) {
  const Packed p = Pack({3, 5, 1, 4, 3, 2}, 2);
  EXPECT_THAT(p.pack, ElementsAre(1, 0, 0, 1, 0, 1));
  EXPECT_THAT(p.rank, ElementsAre(1, 0, 2, 0, 1, 2));
}

TEST(BalancedPackingTest, OneItemPerPackIsIdentity) {
  const Packed p = Pack({1, 9, 5}, 3);
  EXPECT_THAT(p.pack, ElementsAre(0, 1, 2));
  EXPECT_THAT(p.rank, ElementsAre(0, 0, 0));
}

TEST(BalancedPackingTest, HeapPathMatchesTheLinearRule) {
  // 40 packs use the heap; the rule (least load, lowest index) is the same,
  // so equal keys fill packs 0, 1, 2, ... in turn.
  std::vector<float> keys(80, 1.0f);
  const Packed p = Pack(keys, 40);
  for (int i = 0; i < 80; ++i) {
    EXPECT_EQ(p.pack[i], i % 40) << i;
    EXPECT_EQ(p.rank[i], i / 40) << i;
  }
}

TEST(SortDescendingTest, StableOrdersTiesByIndex) {
  std::vector<float> keys(40);
  for (int i = 0; i < 40; ++i) keys[i] = static_cast<float>(i % 3);
  PackingScratch scratch;
  SortDescending(keys, TieOrder::kStable, &scratch);
  std::vector<int32_t> expected;
  for (int k = 2; k >= 0; --k) {
    for (int i = 0; i < 40; ++i) {
      if (i % 3 == k) expected.push_back(i);
    }
  }
  EXPECT_THAT(scratch.order, ElementsAreArray(expected));
}

// Up to 16 items libstdc++'s introsort is an insertion sort, so the
// reference order equals the stable one; beyond, ties may come out in
// another order, but the keys are still in descending order.
TEST(SortDescendingTest, ReferenceOrderIsADescendingPermutation) {
  PackingScratch stable, reference;
  const std::vector<float> small = {1, 2, 2, 1, 3, 2, 1, 1};
  SortDescending(small, TieOrder::kStable, &stable);
  SortDescending(small, TieOrder::kReference, &reference);
  EXPECT_EQ(stable.order, reference.order);
  std::vector<float> big(64);
  for (int i = 0; i < 64; ++i) big[i] = static_cast<float>(i % 4);
  SortDescending(big, TieOrder::kReference, &reference);
  SortDescending(big, TieOrder::kStable, &stable);
  EXPECT_NE(stable.order, reference.order);  // ties really differ here
  std::set<int32_t> seen(reference.order.begin(), reference.order.end());
  EXPECT_EQ(seen.size(), 64u);
  for (int i = 1; i < 64; ++i) {
    EXPECT_GE(big[reference.order[i - 1]], big[reference.order[i]]);
  }
}

TEST(BalancedPackingTest, NoDuplicatesMovesAnItemWhenStuck) {
  // By hand (2 packs of 3, key(owner)): 4(o2) -> p0, 4(o3) -> p1,
  // 3(o0) -> p0, 2(o0) -> p1, 2(o1) -> p1; the last item, 1(o2), finds room
  // only in p0, which holds owner 2, so an earlier item must move.
  const std::vector<float> keys = {2, 2, 4, 3, 1, 4};
  const std::vector<int32_t> owner = {0, 1, 2, 0, 2, 3};
  const Packed plain = Pack(keys, 2);
  EXPECT_EQ(plain.pack[2], plain.pack[4]);  // unconstrained: owner 2 twice
  const Packed p = Pack(keys, 2, TieOrder::kStable, owner);
  std::set<std::pair<int, int>> seen;
  std::vector<int> per_pack(2, 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(seen.insert({p.pack[i], owner[i]}).second) << i;
    ++per_pack[p.pack[i]];
  }
  EXPECT_THAT(per_pack, ElementsAre(3, 3));
  std::vector<std::set<int>> ranks(2);
  for (size_t i = 0; i < keys.size(); ++i) ranks[p.pack[i]].insert(p.rank[i]);
  EXPECT_THAT(ranks, ElementsAre(std::set<int>{0, 1, 2}, std::set<int>{0, 1, 2}));
}

TEST(ReplicateExpertsTest, GreedyOnLoadPerReplica) {
  // 10, 6, 3 into 6 slots: 10 -> 5 each (2), 6 vs 5 -> 6 gets one (3 each),
  // then 5 vs 3 vs 3 -> expert 0 again (10/3).
  const std::vector<float> w = {10, 6, 3};
  std::vector<int32_t> expert(6), rank(6), count(3);
  PackingScratch scratch;
  ReplicateExperts(w, 6, 0, expert.data(), rank.data(), count.data(), &scratch);
  EXPECT_THAT(expert, ElementsAre(0, 1, 2, 0, 1, 0));
  EXPECT_THAT(rank, ElementsAre(0, 0, 0, 1, 1, 2));
  EXPECT_THAT(count, ElementsAre(3, 2, 1));
}

TEST(ReplicateExpertsTest, TiesGoToTheLowestIndexAndCapHolds) {
  const std::vector<float> w = {0, 0, 0, 0};
  std::vector<int32_t> expert(10), rank(10), count(4);
  PackingScratch scratch;
  ReplicateExperts(w, 10, 0, expert.data(), rank.data(), count.data(), &scratch);
  EXPECT_THAT(count, ElementsAre(7, 1, 1, 1));  // all-zero: all to expert 0
  ReplicateExperts(w, 10, 3, expert.data(), rank.data(), count.data(), &scratch);
  EXPECT_THAT(count, ElementsAre(3, 3, 3, 1));
  // The heap path (many extras) follows the same rule.
  std::vector<float> many(100);
  for (int i = 0; i < 100; ++i) many[i] = static_cast<float>(i % 7);
  std::vector<int32_t> e1(300), r1(300), c1(100), e2(300), r2(300), c2(100);
  ReplicateExperts(many, 300, 0, e1.data(), r1.data(), c1.data(), &scratch);
  // Reference: a plain argmax loop.
  std::vector<int32_t> c(100, 1);
  for (int s = 100; s < 300; ++s) {
    int best = 0;
    for (int e = 1; e < 100; ++e) {
      if (many[e] / c[e] > many[best] / c[best]) best = e;
    }
    EXPECT_EQ(e1[s], best) << s;
    ++c[best];
  }
  EXPECT_EQ(c1, c);
}

}  // namespace
}  // namespace tandem::balance::internal
