#include "balance/migration.h"

#include <cstdint>
#include <iostream>
#include <vector>

#include "balance/eplb.h"
#include "balance/metrics.h"
#include "balance/placement.h"
#include "balance/testing/synthetic_loads.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::balance::testing::Rng;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

// DeepSeek-V3-like shape, fewer layers.
constexpr int kLayers = 8, kExperts = 256, kReplicas = 288, kGroups = 8, kNodes = 4, kGpus = 32;

// Loads that drift from `base` by up to +-`drift` (relative), per expert.
std::vector<int64_t> Drift(const std::vector<int64_t>& base, double drift, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> out;
  for (const int64_t x : base) {
    out.push_back(static_cast<int64_t>(static_cast<double>(x) * (1 - drift + 2 * drift * rng.Uniform())));
  }
  return out;
}

int64_t ChangedSlots(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

// Checks the plan's own accounting against an independent recount, and
// the balancedness promise against independently computed metrics.
void CheckPlan(const Weights& w, const std::vector<int64_t>& previous, const MigrationPlan& plan,
               const MigrationOptions& options) {
  ASSERT_OK(ValidatePlacement(plan.placement, kGpus));
  EXPECT_EQ(plan.moved_replicas, ChangedSlots(plan.placement.phy2log, previous));
  int64_t sum = 0;
  for (int l = 0; l < w.num_layers(); ++l) {
    const std::vector<int64_t> a(previous.begin() + l * kReplicas, previous.begin() + (l + 1) * kReplicas);
    const std::vector<int64_t> b(plan.placement.phy2log.begin() + l * kReplicas,
                                 plan.placement.phy2log.begin() + (l + 1) * kReplicas);
    EXPECT_EQ(plan.moved_per_layer[l], ChangedSlots(a, b)) << "layer " << l;
    sum += plan.moved_per_layer[l];
  }
  EXPECT_EQ(sum, plan.moved_replicas);
  EXPECT_EQ(plan.moved_bytes, plan.moved_replicas * options.expert_bytes);
  ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(w, plan.placement, kGpus));
  ASSERT_OK_AND_ASSIGN(Placement fresh, RebalanceExperts(w, kReplicas, kGroups, kNodes, kGpus, options.solve));
  ASSERT_OK_AND_ASSIGN(PlacementMetrics f, ComputeMetrics(w, fresh, kGpus));
  for (int l = 0; l < w.num_layers(); ++l) {
    EXPECT_GE(m.balancedness[l], f.balancedness[l] - options.tolerance) << "layer " << l;
    EXPECT_EQ(plan.metrics.balancedness[l], m.balancedness[l]);
    EXPECT_EQ(plan.fresh_metrics.balancedness[l], f.balancedness[l]);
  }
}

TEST(MigrationTest, IdenticalLoadsMoveNothing) {
  const std::vector<int64_t> loads = testing::ZipfLoads(kLayers, kExperts, 1);
  const Weights w = Weights::Int64(loads, kLayers, kExperts);
  for (const Mode mode : {Mode::kStable, Mode::kReference, Mode::kRefined}) {
    MigrationOptions options;
    options.solve.mode = mode;
    ASSERT_OK_AND_ASSIGN(Placement previous, RebalanceExperts(w, kReplicas, kGroups, kNodes, kGpus, options.solve));
    ASSERT_OK_AND_ASSIGN(MigrationPlan plan,
                         RebalanceWithMigration(w, previous.phy2log, kReplicas, kGroups, kNodes, kGpus, options));
    EXPECT_EQ(plan.moved_replicas, 0);
    EXPECT_EQ(plan.placement.phy2log, previous.phy2log);
    CheckPlan(w, previous.phy2log, plan, options);
  }
}

// On drifting loads the plan stays within the tolerance of a fresh solve and
// moves far fewer replicas than adopting the fresh plan would.
TEST(MigrationTest, DriftingLoadsMoveFewReplicas) {
  const std::vector<int64_t> before = testing::ZipfLoads(kLayers, kExperts, 2);
  const Weights w0 = Weights::Int64(before, kLayers, kExperts);
  for (const double drift : {0.05, 0.2, 0.5}) {
    const std::vector<int64_t> after = Drift(before, drift, 3);
    const Weights w1 = Weights::Int64(after, kLayers, kExperts);
    MigrationOptions options;
    options.expert_bytes = 3 << 20;
    ASSERT_OK_AND_ASSIGN(Placement previous, RebalanceExperts(w0, kReplicas, kGroups, kNodes, kGpus));
    ASSERT_OK_AND_ASSIGN(Placement fresh, RebalanceExperts(w1, kReplicas, kGroups, kNodes, kGpus));
    ASSERT_OK_AND_ASSIGN(MigrationPlan plan,
                         RebalanceWithMigration(w1, previous.phy2log, kReplicas, kGroups, kNodes, kGpus, options));
    CheckPlan(w1, previous.phy2log, plan, options);
    const int64_t naive = ChangedSlots(fresh.phy2log, previous.phy2log);
    std::cout << "drift " << drift << ": moved " << plan.moved_replicas << " replicas (" << plan.moved_bytes / (1 << 20)
              << " MiB) instead of " << naive << " for the fresh plan; "
              << "balancedness " << plan.metrics.balancedness_aggregate << " vs fresh "
              << plan.fresh_metrics.balancedness_aggregate << "\n";
    EXPECT_LT(plan.moved_replicas, naive / 2);
  }
}

TEST(MigrationTest, ToleranceBoundsAndRandomPreviousPlans) {
  Rng rng(9);
  for (int i = 0; i < 20; ++i) {
    const std::vector<int64_t> loads = testing::ZipfLoads(kLayers, kExperts, rng.Next());
    const Weights w = Weights::Int64(loads, kLayers, kExperts);
    // A previous plan unrelated to these loads: each expert once, then
    // random extra replicas, shuffled within each node.
    std::vector<int64_t> previous;
    for (int l = 0; l < kLayers; ++l) {
      std::vector<int64_t> layer;
      for (int e = 0; e < kExperts; ++e) layer.push_back(e);
      while (static_cast<int>(layer.size()) < kReplicas) {
        layer.push_back(static_cast<int64_t>(rng.Below(kExperts)));
      }
      for (int s = kReplicas - 1; s > 0; --s) {
        std::swap(layer[s], layer[rng.Below(s + 1)]);
      }
      previous.insert(previous.end(), layer.begin(), layer.end());
    }
    MigrationOptions options;
    options.tolerance = rng.Pick({0.0, 0.01, 0.05});
    options.solve.mode = rng.Pick({Mode::kStable, Mode::kRefined});
    ASSERT_OK_AND_ASSIGN(MigrationPlan plan,
                         RebalanceWithMigration(w, previous, kReplicas, kGroups, kNodes, kGpus, options));
    CheckPlan(w, previous, plan, options);
  }
}

TEST(MigrationTest, HugeToleranceKeepsThePreviousPlan) {
  const std::vector<int64_t> loads = testing::ZipfLoads(kLayers, kExperts, 4);
  const Weights w = Weights::Int64(loads, kLayers, kExperts);
  std::vector<int64_t> previous;
  for (int l = 0; l < kLayers; ++l) {
    for (int s = 0; s < kReplicas; ++s) previous.push_back(s % kExperts);
  }
  MigrationOptions options;
  options.tolerance = 1.0;
  ASSERT_OK_AND_ASSIGN(MigrationPlan plan,
                       RebalanceWithMigration(w, previous, kReplicas, kGroups, kNodes, kGpus, options));
  EXPECT_EQ(plan.moved_replicas, 0);
  EXPECT_EQ(plan.placement.phy2log, previous);
}

TEST(MigrationTest, RejectsBadPreviousPlansAndTolerance) {
  const std::vector<int64_t> loads = testing::ZipfLoads(1, 16, 5);
  const Weights w = Weights::Int64(loads, 1, 16);
  std::vector<int64_t> previous(16);
  for (int s = 0; s < 16; ++s) previous[s] = s;
  EXPECT_OK(RebalanceWithMigration(w, previous, 16, 4, 2, 4));
  EXPECT_THAT(RebalanceWithMigration(w, {0, 1, 2}, 16, 4, 2, 4),
              StatusIs(kInvalid, HasSubstr("previous plan: placement: "
                                           "expected phy2log")));
  std::vector<int64_t> missing = previous;
  missing[3] = 4;  // expert 3 has no replica left
  EXPECT_THAT(RebalanceWithMigration(w, missing, 16, 4, 2, 4),
              StatusIs(kInvalid, HasSubstr("previous plan: layer 0 expert 3: "
                                           "expected at least one replica")));
  std::vector<int64_t> out_of_range = previous;
  out_of_range[0] = 16;
  EXPECT_THAT(RebalanceWithMigration(w, out_of_range, 16, 4, 2, 4),
              StatusIs(kInvalid, HasSubstr("phy2log[0][0]: expected an expert "
                                           "id in [0, 16), got 16")));
  MigrationOptions options;
  options.tolerance = -0.1;
  EXPECT_THAT(RebalanceWithMigration(w, previous, 16, 4, 2, 4, options),
              StatusIs(kInvalid, HasSubstr("tolerance: expected a finite "
                                           "value >= 0, got -0.1")));
  options.tolerance = 0.01;
  options.expert_bytes = -1;
  EXPECT_THAT(RebalanceWithMigration(w, previous, 16, 4, 2, 4, options),
              StatusIs(kInvalid, HasSubstr("expert_bytes: expected a size >= "
                                           "0, got -1")));
  EXPECT_THAT(RebalanceWithMigration(w, previous, 15, 4, 2, 4), StatusIs(kInvalid, HasSubstr("num_replicas")));
}

}  // namespace
}  // namespace tandem::balance
