#include "plan/partition.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"

namespace tandem::plan {
namespace {

using ::tandem::testing::StatusIs;
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

// Random costs, speeds, memory and cap on every kind with 2 ranks (and
// DualPipe's pairs and the V on 4): the partition against the best of every
// cut (each evaluated by Evaluate(), the true rank times and memories):
// equal for the exact placements, within the bound otherwise, always under
// the cap; when no cut fits, refused naming the leanest cut's need.
TEST(PartitionTest, AgainstEveryCut) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> cost(0.1, 3.0);
  struct Case {
    schedule::Kind kind;
    int ranks;
  };
  int exact = 0, approximate = 0, refused = 0;
  double worst_ratio = 1;
  for (const Case& k :
       {Case{schedule::Kind::kGPipe, 2}, Case{schedule::Kind::k1F1B, 3}, Case{schedule::Kind::kZB1P, 2},
        Case{schedule::Kind::kZBV, 2}, Case{schedule::Kind::kDualPipeV, 2}, Case{schedule::Kind::kDualPipe, 2},
        Case{schedule::Kind::kDualPipe, 4}, Case{schedule::Kind::kInterleaved1F1B, 2}}) {
    ASSERT_OK_AND_ASSIGN(schedule::Schedule s, schedule::Generate({k.kind, k.ranks, 2 * k.ranks}));
    for (int trial = 0; trial < 40; ++trial) {
      SCOPED_TRACE(absl::StrFormat("%s on %d ranks, trial %d", schedule::KindName(k.kind), k.ranks, trial));
      const int n = s.stages + static_cast<int>(rng() % 5);
      PartitionRequest r;
      for (int u = 0; u < n; ++u) {
        r.unit_costs.push_back(cost(rng));
        r.unit_memory.push_back({cost(rng) * 100, cost(rng)});
      }
      for (int q = 0; q < s.ranks; ++q) r.rank_speed.push_back(rng() % 3 == 0 ? 0.5 : 1.0);
      r.tokens = 10;
      // Caps from generous to impossible.
      double total = 0;
      for (const UnitMemory& m : r.unit_memory)
        total += m.state_bytes + 10 * s.microbatches * m.activation_bytes_per_token;
      r.memory_cap_bytes = trial % 4 == 3 ? 0 : total * (0.15 + 0.3 * (trial % 4));
      double best = 1e300, leanest = 1e300;
      ForEachCut(n, s.stages, [&](const std::vector<int>& b) {
        const StagePlan p = Evaluate(s, r, b).value();
        const double fullest = *std::max_element(p.rank_memory.begin(), p.rank_memory.end());
        leanest = std::min(leanest, fullest);
        if (r.memory_cap_bytes == 0 || fullest <= r.memory_cap_bytes) best = std::min(best, p.max_rank_time);
      });
      absl::StatusOr<StagePlan> got = PartitionStages(s, r);
      if (!got.ok()) {
        // Refused: no cut fits (exact) or none fits the even split of the
        // cap between a rank's copies (other placements).
        ASSERT_THAT(got.status(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("leanest needs")));
        if (k.kind != schedule::Kind::kInterleaved1F1B) {
          EXPECT_EQ(best, 1e300);
          EXPECT_THAT(std::string(got.status().message()), HasSubstr(absl::StrFormat("%.4g GiB", leanest / (1 << 30))));
        }
        ++refused;
        continue;
      }
      ASSERT_LT(best, 1e300);
      const double fullest = *std::max_element(got->rank_memory.begin(), got->rank_memory.end());
      if (r.memory_cap_bytes > 0) {
        EXPECT_LE(fullest, r.memory_cap_bytes);
      }
      EXPECT_GE(got->max_rank_time, best * (1 - 1e-12));
      if (got->exact) {
        EXPECT_NEAR(got->max_rank_time, best, 1e-12 * best);
        ++exact;
      } else {
        EXPECT_LE(got->max_rank_time, got->bound * best * (1 + 1e-12));
        worst_ratio = std::max(worst_ratio, got->max_rank_time / best);
        ++approximate;
      }
    }
  }
  std::printf("partitions: %d exact (equal to the best cut), %d approximate (worst %.3f x the best cut), %d refused\n",
              exact, approximate, worst_ratio, refused);
  EXPECT_GT(exact, 100);
  EXPECT_GT(refused, 5);
}

// A pipeline rank at half speed gets fewer units; the even split is slower
// on the objective (the twin of the search being right).
TEST(PartitionTest, ASlowRankGetsLessWork) {
  ASSERT_OK_AND_ASSIGN(schedule::Schedule s, schedule::Generate({schedule::Kind::k1F1B, 4, 8}));
  PartitionRequest r;
  r.unit_costs.assign(16, 1.0);
  r.rank_speed = {1, 1, 0.5, 1};
  ASSERT_OK_AND_ASSIGN(StagePlan p, PartitionStages(s, r));
  const int slow = p.bounds[3] - p.bounds[2];
  EXPECT_LT(slow, 4);
  for (int st : {0, 1, 3}) EXPECT_GT(p.bounds[st + 1] - p.bounds[st], slow);
  ASSERT_OK_AND_ASSIGN(StagePlan even, Evaluate(s, r, {0, 4, 8, 12, 16}));
  EXPECT_LT(p.max_rank_time, even.max_rank_time);
  // DualPipe: ranks 1 and 2 share stages 1 and 2, so the slow rank 2 slows
  // its pair; that pair's stages shrink.
  ASSERT_OK_AND_ASSIGN(schedule::Schedule d, schedule::Generate({schedule::Kind::kDualPipe, 4, 8}));
  ASSERT_OK_AND_ASSIGN(StagePlan dp, PartitionStages(d, r));
  EXPECT_LT(dp.bounds[3] - dp.bounds[1], 8);
}

TEST(PartitionTest, UnitFlopsFollowTheModel) {
  model::ModelConfig c;
  c.num_layers = 3;
  c.num_dense_layers = 1;
  const std::vector<double> f = UnitFlops(c);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0], 6.0 * c.input_dim * c.hidden);
  EXPECT_EQ(f[2], f[3]);  // two MoE blocks
  EXPECT_GT(f[2], f[0]);
}

TEST(PartitionTest, BadRequestsAreRefusedNamingTheValue) {
  ASSERT_OK_AND_ASSIGN(schedule::Schedule s, schedule::Generate({schedule::Kind::k1F1B, 2, 4}));
  PartitionRequest r;
  r.unit_costs = {1, 1, 1};
  r.rank_speed = {1, 1, 1};
  EXPECT_THAT(PartitionStages(s, r).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank_speed: expected 2 speeds")));
  r.rank_speed = {1, 0};
  EXPECT_THAT(PartitionStages(s, r).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank_speed[1]: expected a finite speed > 0")));
  r.rank_speed = {1, -2};
  EXPECT_THAT(PartitionStages(s, r).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got -2")));
  r.rank_speed = {};
  r.unit_costs = {1, -1, 1};
  EXPECT_THAT(PartitionStages(s, r).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unit_costs[1]")));
  r.unit_costs = {1};
  EXPECT_THAT(PartitionStages(s, r).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 1 units")));
  r.unit_costs = {1, 1, 1};
  r.unit_memory = {{1, 1}};
  EXPECT_THAT(PartitionStages(s, r).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unit_memory")));
  r.unit_memory = {{100, 0}, {100, 0}, {100, 0}};
  r.memory_cap_bytes = 150;
  EXPECT_THAT(PartitionStages(s, r).status(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("cap")));
  r.memory_cap_bytes = 200;  // the twin: a cap that fits
  EXPECT_OK(PartitionStages(s, r).status());
}

}  // namespace
}  // namespace tandem::plan
