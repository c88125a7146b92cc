// Randomized properties of RebalanceExperts over hundreds of generated
// problems (fixed seeds): every mode returns a valid placement, kRefined is
// never worse than kReference on any layer, and no_duplicates holds.

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

struct RandomProblem {
  int layers, experts, replicas, groups, nodes, gpus;
  std::vector<int64_t> int64_loads;
  std::vector<float> float32_loads;
  std::string kind;

  Weights weights() const {
    return float32_loads.empty() ? Weights::Int64(int64_loads, layers, experts)
                                 : Weights::Float32(float32_loads, layers, experts);
  }
  std::string Describe() const {
    return absl::StrCat(kind, " L=", layers, " E=", experts, " R=", replicas, " G=", groups, " N=", nodes,
                        " gpus=", gpus);
  }
};

// A valid problem: shapes from tiny to DeepSeek-like, hierarchical and
// global, with tie-heavy, skewed, zero and float loads.
RandomProblem Generate(Rng& rng) {
  RandomProblem p;
  p.nodes = rng.Pick({1, 2, 3, 4});
  const int gpus_per_node = rng.Pick({1, 2, 4, 8});
  p.gpus = p.nodes * gpus_per_node;
  const bool global = rng.Below(4) == 0;
  const int groups_per_node = rng.Pick({1, 2, 4});
  p.groups = global ? p.nodes * groups_per_node + 1 : p.nodes * groups_per_node;
  if (global && p.nodes == 1) p.groups = 3, p.nodes = 2, p.gpus = 2 * gpus_per_node;
  const int group_size = rng.Pick({1, 2, 3, 4, 8, 16});
  p.experts = p.groups * group_size;
  if (global) p.experts = rng.Pick({8, 12, 16, 24, 32, 48, 64});
  const int slots_per_gpu = (p.experts + p.gpus - 1) / p.gpus + static_cast<int>(rng.Below(3));
  p.replicas = p.gpus * slots_per_gpu;
  p.layers = 1 + static_cast<int>(rng.Below(3));
  const int n = p.layers * p.experts;
  switch (rng.Below(5)) {
    case 0:
      p.kind = "zipf";
      p.int64_loads = testing::ZipfLoads(p.layers, p.experts, rng.Next());
      break;
    case 1:
      p.kind = "uniform";
      p.int64_loads = testing::UniformLoads(p.layers, p.experts, rng.Next(), 999);
      break;
    case 2:
      p.kind = "ties";
      p.int64_loads = testing::UniformLoads(p.layers, p.experts, rng.Next(), 3);
      break;
    case 3:
      p.kind = "zeros";
      p.int64_loads = testing::UniformLoads(p.layers, p.experts, rng.Next(), 9);
      for (int64_t& x : p.int64_loads) x = x < 6 ? 0 : x;
      break;
    default:
      p.kind = "float";
      for (int i = 0; i < n; ++i) {
        p.float32_loads.push_back(static_cast<float>(rng.Uniform() * 100));
      }
  }
  return p;
}

TEST(EplbRandomTest, ValidPlacementsAndRefinedNeverWorse) {
  Rng rng(20240601);
  int cases = 0;
  int layers = 0;
  int improved_layers = 0;
  for (int i = 0; i < 400; ++i) {
    const RandomProblem p = Generate(rng);
    SCOPED_TRACE(p.Describe());
    const Weights w = p.weights();
    RebalanceOptions reference_options;
    reference_options.mode = Mode::kReference;
    ASSERT_OK_AND_ASSIGN(Placement reference,
                         RebalanceExperts(w, p.replicas, p.groups, p.nodes, p.gpus, reference_options));
    ASSERT_OK_AND_ASSIGN(PlacementMetrics reference_metrics, ComputeMetrics(w, reference, p.gpus));
    for (const bool cross_node : {false, true}) {
      for (const Mode mode : {Mode::kStable, Mode::kRefined}) {
        RebalanceOptions options;
        options.mode = mode;
        options.cross_node_replicas = cross_node;
        ASSERT_OK_AND_ASSIGN(Placement placement, RebalanceExperts(w, p.replicas, p.groups, p.nodes, p.gpus, options));
        ASSERT_OK(ValidatePlacement(placement, p.gpus));
        if (mode != Mode::kRefined) continue;
        ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(w, placement, p.gpus));
        for (int l = 0; l < p.layers; ++l) {
          ASSERT_LE(m.max_gpu_load[l], reference_metrics.max_gpu_load[l])
              << "layer " << l << " cross_node " << cross_node;
          if (cross_node) {
            ++layers;
            improved_layers += m.max_gpu_load[l] < reference_metrics.max_gpu_load[l];
          }
        }
      }
    }
    ASSERT_OK(ValidatePlacement(reference, p.gpus));
    ++cases;
  }
  std::cout << cases << " random problems; refined (cross-node) lowered the "
            << "max GPU load on " << improved_layers << " of " << layers << " layers, raised it on none\n";
  EXPECT_EQ(cases, 400);
  EXPECT_GT(improved_layers, layers / 4);
}

TEST(EplbRandomTest, NoDuplicatesHoldsWhenFeasible) {
  Rng rng(77);
  int feasible = 0;
  int infeasible = 0;
  for (int i = 0; i < 300; ++i) {
    const RandomProblem p = Generate(rng);
    SCOPED_TRACE(p.Describe());
    const bool hierarchical = UsesHierarchicalPolicy(p.groups, p.nodes);
    const int experts_per_node = p.experts / (hierarchical ? p.nodes : 1);
    for (const Mode mode : {Mode::kStable, Mode::kReference, Mode::kRefined}) {
      RebalanceOptions options;
      options.mode = mode;
      options.no_duplicates = true;
      options.cross_node_replicas = i % 2 == 0;
      absl::StatusOr<Placement> placement =
          RebalanceExperts(p.weights(), p.replicas, p.groups, p.nodes, p.gpus, options);
      if (p.replicas / p.gpus > experts_per_node) {
        EXPECT_THAT(placement, ::tandem::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                           ::testing::HasSubstr("no_duplicates: infeasible")));
        ++infeasible;
        continue;
      }
      ASSERT_OK(placement);
      ASSERT_OK(ValidatePlacement(*placement, p.gpus));
      ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(p.weights(), *placement, p.gpus));
      EXPECT_EQ(m.gpus_holding_duplicate_replicas, 0);
      ++feasible;
    }
  }
  std::cout << feasible << " feasible and " << infeasible << " infeasible no-duplicate solves\n";
  EXPECT_GT(feasible, 300);
  EXPECT_GT(infeasible, 0);
}

}  // namespace
}  // namespace tandem::balance
