#include "model/partitioner.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/init.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every way to cut n units into s contiguous non-empty stages.
void ForEachCut(int n, int s, const std::function<void(const std::vector<int>&)>& fn) {
  std::vector<int> b = {0};
  std::function<void(int)> rec = [&](int left) {
    if (left == 1) {
      b.push_back(n);
      fn(b);
      b.pop_back();
      return;
    }
    for (int j = b.back() + 1; j <= n - (left - 1); ++j) {
      b.push_back(j);
      rec(left - 1);
      b.pop_back();
    }
  };
  rec(s);
}

double RankMax(const std::vector<double>& c, const std::vector<int>& b, bool v_shape) {
  const int stages = static_cast<int>(b.size()) - 1;
  const int ranks = v_shape ? stages / 2 : stages;
  std::vector<double> load(ranks, 0.0);
  for (int s = 0; s < stages; ++s) {
    double sum = 0;
    for (int u = b[s]; u < b[s + 1]; ++u) sum += c[u];
    load[v_shape && s >= ranks ? 2 * ranks - 1 - s : s] += sum;
  }
  return *std::max_element(load.begin(), load.end());
}

TEST(PartitionerTest, ByHand) {
  ASSERT_OK_AND_ASSIGN(Partition p, PartitionUnits({1, 1, 1, 1, 4}, 2));
  EXPECT_THAT(p.bounds, ElementsAre(0, 4, 5));
  EXPECT_EQ(p.max_rank_cost, 4.0);
  // V: 2 ranks, 4 stages; rank 0 holds the first and the last stage.
  ASSERT_OK_AND_ASSIGN(Partition v, PartitionVShape({3, 1, 1, 1, 1, 3}, 2));
  EXPECT_THAT(v.rank, ElementsAre(0, 1, 1, 0));
  EXPECT_EQ(v.max_rank_cost, 6.0);
  EXPECT_EQ(v.bounds.front(), 0);
  EXPECT_EQ(v.bounds.back(), 6);
}

// The exact optimum, checked against brute force over random costs.
TEST(PartitionerTest, OptimalAgainstBruteForce) {
  SplitMix64 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 4 + trial % 6;
    std::vector<double> c(n);
    for (double& x : c) x = static_cast<double>(rng.Next() % 9);
    for (int s = 1; s <= std::min(n, 4); ++s) {
      double best = std::numeric_limits<double>::infinity();
      ForEachCut(n, s, [&](const std::vector<int>& b) { best = std::min(best, RankMax(c, b, false)); });
      ASSERT_OK_AND_ASSIGN(Partition p, PartitionUnits(c, s));
      EXPECT_EQ(p.max_rank_cost, best) << "n " << n << " s " << s;
      EXPECT_EQ(RankMax(c, p.bounds, false), best);
    }
    for (int r = 1; 2 * r <= std::min(n, 6); ++r) {
      double best = std::numeric_limits<double>::infinity();
      ForEachCut(n, 2 * r, [&](const std::vector<int>& b) { best = std::min(best, RankMax(c, b, true)); });
      ASSERT_OK_AND_ASSIGN(Partition p, PartitionVShape(c, r));
      EXPECT_EQ(p.max_rank_cost, best) << "n " << n << " ranks " << r;
      EXPECT_EQ(RankMax(c, p.bounds, true), best);
      ASSERT_EQ(p.bounds.size(), 2u * r + 1);
    }
  }
}

TEST(PartitionerTest, BadInputRejected) {
  EXPECT_THAT(PartitionUnits({1, -1}, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("costs[1]: expected a finite cost >= 0, got -1")));
  EXPECT_THAT(PartitionUnits({1, 2}, 3).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stages: expected between 1 and")));
  EXPECT_THAT(PartitionVShape({1, 2, 3}, 2).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 4")));
  EXPECT_THAT(PartitionVShape(std::vector<double>(129, 1.0), 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 128")));
}

}  // namespace
}  // namespace tandem::model
