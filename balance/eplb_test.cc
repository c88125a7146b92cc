#include "balance/eplb.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "balance/eplb_json.h"
#include "balance/metrics.h"
#include "balance/placement.h"
#include "balance/testing/eplb_vectors.h"
#include "base/strict_json.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::balance::testing::CompareOutputs;
using ::tandem::balance::testing::LoadVectorCases;
using ::tandem::balance::testing::VectorCase;
using ::tandem::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::StatusOr<Placement> Solve(const VectorCase& c, Mode mode) {
  RebalanceOptions options;
  options.mode = mode;
  return RebalanceExperts(c.problem.weights(), c.problem.num_replicas, c.problem.num_groups, c.problem.num_nodes,
                          c.problem.num_gpus, options);
}

// Solves every case in `mode` and counts the cases whose three outputs
// equal `expected` of the case; each mismatch is reported.
int CountMatches(const std::vector<VectorCase>& cases, Mode mode, testing::ExpectedOutputs VectorCase::*expected) {
  int matched = 0;
  for (const VectorCase& c : cases) {
    absl::StatusOr<Placement> p = Solve(c, mode);
    EXPECT_OK(p) << c.name;
    if (!p.ok()) continue;
    const std::vector<std::string> diffs = CompareOutputs(*p, c.*expected);
    EXPECT_TRUE(diffs.empty()) << c.name << ": " << absl::StrJoin(diffs, "; ");
    matched += diffs.empty();
  }
  return matched;
}

// Every shared vector matches the reference's three outputs exactly.
TEST(EplbParityTest, ReferenceModeMatchesEveryCase) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  ASSERT_EQ(cases.size(), 24u);
  const int matched = CountMatches(cases, Mode::kReference, &VectorCase::reference);
  std::cout << "reference mode: " << matched << "/" << cases.size() << " cases match phy2log, log2phy and logcnt\n";
  EXPECT_EQ(matched, static_cast<int>(cases.size()));
}

// Stable mode matches each case's stable_sort_variant.
TEST(EplbParityTest, StableModeMatchesStableVariants) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  const int matched = CountMatches(cases, Mode::kStable, &VectorCase::stable);
  std::cout << "stable mode: " << matched << "/" << cases.size() << " cases match the stable-sort variants\n";
  EXPECT_EQ(matched, static_cast<int>(cases.size()));
}

// Must-fail twin of the parity tests: a single corrupted expected value is
// reported, naming the array, so a broken comparison cannot pass silently.
TEST(EplbParityTest, ComparisonReportsACorruptedValue) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  const VectorCase& c = cases[0];
  ASSERT_OK_AND_ASSIGN(Placement p, Solve(c, Mode::kReference));
  ASSERT_THAT(CompareOutputs(p, c.reference), IsEmpty());
  for (const char* array : {"phy2log", "log2phy", "logcnt"}) {
    testing::ExpectedOutputs corrupted = c.reference;
    std::vector<int64_t>& values = std::string(array) == "phy2log"   ? corrupted.phy2log
                                   : std::string(array) == "log2phy" ? corrupted.log2phy
                                                                     : corrupted.logcnt;
    values[values.size() / 2] += 1;
    EXPECT_THAT(CompareOutputs(p, corrupted),
                ElementsAre(HasSubstr(absl::StrCat(array, " (flat index ", values.size() / 2))))
        << array;
  }
  testing::ExpectedOutputs narrower = c.reference;
  narrower.width = 1;
  EXPECT_THAT(CompareOutputs(p, narrower), Contains(HasSubstr("log2phy width: expected 1, got 2")));
}

// The invalid inputs the reference asserts on are rejected with a message
// naming the value; the one it accepts is accepted.
TEST(EplbValidationTest, VectorInvalidCases) {
  ASSERT_OK_AND_ASSIGN(std::vector<testing::InvalidCase> cases, testing::LoadInvalidCases());
  ASSERT_EQ(cases.size(), 6u);
  const std::map<std::string, std::string> expected_message = {
      {"replicas_not_multiple_of_gpus", "num_replicas: expected a multiple of num_gpus = 8, got 15"},
      {"gpus_not_multiple_of_nodes_hier", "num_gpus: expected a multiple of num_nodes = 2"},
      {"experts_not_multiple_of_groups", "num_experts: expected a multiple of num_groups = 5, got 12"},
      {"replicas_less_than_experts_global", "num_replicas: expected at least num_experts = 12, got 8"},
      {"replicas_less_than_experts_hier", "num_replicas: expected at least num_experts = 12, got 8"},
  };
  int handled = 0;
  for (const testing::InvalidCase& c : cases) {
    for (Mode mode : {Mode::kStable, Mode::kReference, Mode::kRefined}) {
      RebalanceOptions options;
      options.mode = mode;
      absl::StatusOr<Placement> p = RebalanceExperts(c.problem.weights(), c.problem.num_replicas, c.problem.num_groups,
                                                     c.problem.num_nodes, c.problem.num_gpus, options);
      if (c.reference_accepts) {
        ASSERT_OK(p) << c.name;
        EXPECT_OK(ValidatePlacement(*p, c.problem.num_gpus));
      } else {
        ASSERT_EQ(expected_message.count(c.name), 1u) << c.name;
        EXPECT_THAT(p, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(expected_message.at(c.name)))) << c.name;
      }
    }
    ++handled;
  }
  std::cout << "invalid cases: " << handled << "/" << cases.size()
            << " handled as the reference (5 rejected, 1 accepted)\n";
  EXPECT_EQ(handled, 6);
}

Placement MustSolve(const Weights& w, int replicas, int groups, int nodes, int gpus, RebalanceOptions options = {}) {
  absl::StatusOr<Placement> p = RebalanceExperts(w, replicas, groups, nodes, gpus, options);
  EXPECT_OK(p);
  return p.ok() ? *std::move(p) : Placement();
}

TEST(EplbValidationTest, RejectsBadCountsAndLoads) {
  const std::vector<int64_t> loads = {5, 1, 2, 7};
  const Weights w = Weights::Int64(loads, 1, 4);
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(RebalanceExperts(w, 0, 1, 1, 1), StatusIs(kInvalid, HasSubstr("num_replicas: expected a "
                                                                            "positive count, got 0")));
  EXPECT_THAT(RebalanceExperts(w, 4, -2, 1, 1), StatusIs(kInvalid, HasSubstr("num_groups: expected a positive "
                                                                             "count, got -2")));
  EXPECT_THAT(RebalanceExperts(w, 4, 1, 0, 1), StatusIs(kInvalid, HasSubstr("num_nodes")));
  EXPECT_THAT(RebalanceExperts(w, 4, 1, 1, 0), StatusIs(kInvalid, HasSubstr("num_gpus")));
  EXPECT_THAT(RebalanceExperts(Weights::Int64(loads, 2, 4), 4, 1, 1, 1),
              StatusIs(kInvalid, HasSubstr("weights: expected 8 values for 2 "
                                           "layers x 4 experts, got 4")));
  EXPECT_THAT(RebalanceExperts(Weights::Int64({}, 0, 4), 4, 1, 1, 1),
              StatusIs(kInvalid, HasSubstr("at least one layer, got 0")));
  const std::vector<int64_t> negative = {5, 1, -3, 7};
  EXPECT_THAT(RebalanceExperts(Weights::Int64(negative, 1, 4), 4, 1, 1, 1),
              StatusIs(kInvalid, HasSubstr("weights[0][2]: expected a finite "
                                           "load >= 0, got -3")));
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -0.5f}) {
    const std::vector<float> f = {1.0f, bad, 2.0f, 3.0f};
    EXPECT_THAT(RebalanceExperts(Weights::Float32(f, 1, 4), 4, 1, 1, 1),
                StatusIs(kInvalid, HasSubstr("weights[0][1]: expected a "
                                             "finite load >= 0, got")))
        << bad;
  }
}

// The README example (reference output reproduced in the anchors note) and
// the same loads as float32 give the same plan.
TEST(EplbTest, ReadmeExampleAsIntAndFloat) {
  const std::vector<int64_t> ints = {90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,
                                     20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27};
  const std::vector<float> floats(ints.begin(), ints.end());
  RebalanceOptions options;
  options.mode = Mode::kReference;
  const Placement a = MustSolve(Weights::Int64(ints, 2, 12), 16, 4, 2, 8, options);
  const Placement b = MustSolve(Weights::Float32(floats, 2, 12), 16, 4, 2, 8, options);
  EXPECT_THAT(a.phy2log, ElementsAreArray({5, 6,  5, 7, 8, 4,  3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
                                           7, 10, 6, 8, 6, 11, 8, 9, 2,  4, 5,  1, 5, 0, 3,  1}));
  EXPECT_EQ(a.max_count, 2);
  // Layer 0, expert 1: replicas in creation order, not slot order.
  EXPECT_EQ(a.log2phy[1 * 2 + 0], 15);
  EXPECT_EQ(a.log2phy[1 * 2 + 1], 13);
  EXPECT_EQ(a.phy2log, b.phy2log);
  EXPECT_EQ(a.log2phy, b.log2phy);
  EXPECT_EQ(a.logcnt, b.logcnt);
}

// Same input, same bits, in every mode (run twice, and interleaved with
// other solves so that no state leaks between calls).
TEST(EplbTest, Deterministic) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  for (Mode mode : {Mode::kStable, Mode::kReference, Mode::kRefined}) {
    std::vector<Placement> first;
    for (const VectorCase& c : cases) {
      ASSERT_OK_AND_ASSIGN(Placement p, Solve(c, mode));
      first.push_back(std::move(p));
    }
    for (size_t i = cases.size(); i-- > 0;) {
      ASSERT_OK_AND_ASSIGN(Placement p, Solve(cases[i], mode));
      EXPECT_EQ(p.phy2log, first[i].phy2log) << cases[i].name;
      EXPECT_EQ(p.log2phy, first[i].log2phy) << cases[i].name;
      EXPECT_EQ(p.logcnt, first[i].logcnt) << cases[i].name;
    }
  }
}

// The metrics of the reference outputs match the vectors file's (rounded
// there to 6 decimals for balancedness, 4 for loads).
TEST(EplbTest, MetricsOfReferenceOutputsMatchVectors) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  for (const VectorCase& c : cases) {
    ASSERT_OK_AND_ASSIGN(Placement p, Solve(c, Mode::kReference));
    ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(c.problem.weights(), p, c.problem.num_gpus));
    const json::Json& b = c.metrics.at("balancedness_per_layer");
    const json::Json& mx = c.metrics.at("max_gpu_load_per_layer");
    ASSERT_EQ(b.size(), m.balancedness.size()) << c.name;
    for (size_t l = 0; l < b.size(); ++l) {
      EXPECT_NEAR(m.balancedness[l], b[l].get<double>(), 5e-7) << c.name;
      EXPECT_NEAR(m.max_gpu_load[l], mx[l].get<double>(), 5e-5 + 1e-12 * mx[l].get<double>()) << c.name;
    }
    EXPECT_NEAR(m.balancedness_aggregate, c.metrics.at("balancedness_aggregate").get<double>(), 5e-7) << c.name;
    EXPECT_EQ(m.gpus_holding_duplicate_replicas, c.metrics.at("gpus_holding_duplicate_replicas").get<int64_t>())
        << c.name;
  }
}

// The reference puts up to 17 replicas of a hot expert on 4 GPUs; with
// no_duplicates each GPU holds an expert at most once, so its count is
// capped at 4, in every mode.
TEST(EplbNoDuplicatesTest, HotExpertIsSpreadOverGpus) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  const auto it =
      std::find_if(cases.begin(), cases.end(), [](const auto& c) { return c.name == "hot_expert_global_dup_on_gpu"; });
  ASSERT_NE(it, cases.end());
  const Problem& p = it->problem;
  for (Mode mode : {Mode::kStable, Mode::kReference, Mode::kRefined}) {
    RebalanceOptions options;
    options.mode = mode;
    ASSERT_OK_AND_ASSIGN(PlacementMetrics before, ComputeMetrics(p.weights(),
                                                                 MustSolve(p.weights(), p.num_replicas, p.num_groups,
                                                                           p.num_nodes, p.num_gpus, options),
                                                                 p.num_gpus));
    EXPECT_GT(before.gpus_holding_duplicate_replicas, 0);
    options.no_duplicates = true;
    const Placement placement = MustSolve(p.weights(), p.num_replicas, p.num_groups, p.num_nodes, p.num_gpus, options);
    ASSERT_OK(ValidatePlacement(placement, p.num_gpus));
    ASSERT_OK_AND_ASSIGN(PlacementMetrics after, ComputeMetrics(p.weights(), placement, p.num_gpus));
    EXPECT_EQ(after.gpus_holding_duplicate_replicas, 0);
    EXPECT_EQ(*std::max_element(placement.logcnt.begin(), placement.logcnt.end()), p.num_gpus);
  }
}

TEST(EplbNoDuplicatesTest, InfeasibleIsAnError) {
  const std::vector<int64_t> loads = {5, 1, 2, 7};
  RebalanceOptions options;
  options.no_duplicates = true;
  // 16 slots on 2 GPUs: 8 per GPU, but only 4 experts.
  EXPECT_THAT(RebalanceExperts(Weights::Int64(loads, 1, 4), 16, 1, 1, 2, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no_duplicates: infeasible: expected at most "
                                                                     "4 slots per GPU (the experts of a node), "
                                                                     "got 8")));
  // Hierarchical: 2 nodes of 2 experts each, 3 slots per GPU.
  EXPECT_THAT(RebalanceExperts(Weights::Int64(loads, 1, 4), 12, 2, 2, 4, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected at most 2 slots per GPU")));
  // Feasible at the limit: every GPU holds each of its node's experts once.
  ASSERT_OK_AND_ASSIGN(Placement p, RebalanceExperts(Weights::Int64(loads, 1, 4), 8, 2, 2, 4, options));
  EXPECT_THAT(p.logcnt, ElementsAre(2, 2, 2, 2));
}

}  // namespace
}  // namespace tandem::balance
