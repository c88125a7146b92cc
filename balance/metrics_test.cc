#include "balance/metrics.h"

#include <cstdint>
#include <vector>

#include "balance/placement.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::DoubleEq;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The README example of the EPLB reference and its published plan.
const std::vector<int64_t>& ReadmeLoads() {
  static const auto* const kLoads = new std::vector<int64_t>{90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,
                                                             20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27};
  return *kLoads;
}

Placement ReadmePlan() {
  const std::vector<int64_t> phy2log = {5, 6,  5, 7, 8, 4,  3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
                                        7, 10, 6, 8, 6, 11, 8, 9, 2,  4, 5,  1, 5, 0, 3,  1};
  return PlacementFromPhy2Log(2, 12, 16, phy2log).value();
}

// GPU loads by hand, layer 0 (two slots per GPU; experts 1, 4, 5 and 10
// have two replicas, each carrying half): GPU0 = 165/2 + 39 = 121.5,
// GPU1 = 165/2 + 4 = 86.5, GPU2 = 73 + 104/2 = 125, GPU3 = 61 + 104/2 = 113.
TEST(MetricsTest, ReadmeGpuLoadsByHand) {
  const Weights w = Weights::Int64(ReadmeLoads(), 2, 12);
  ASSERT_OK_AND_ASSIGN(std::vector<double> loads, GpuLoads(w, ReadmePlan(), 8));
  EXPECT_THAT(std::vector<double>(loads.begin(), loads.begin() + 8),
              ElementsAre(121.5, 86.5, 125.0, 113.0, 147.5, 131.5, 156.0, 152.0));
}

// Layer 0: mean = 1033 / 8 = 129.125, max = 156 -> 0.827724;
// layer 1: mean = 1156 / 8 = 144.5, max = 179.5 -> 0.805014;
// aggregate (129.125 + 144.5) / (156 + 179.5) = 0.815574.
TEST(MetricsTest, ReadmeBalancedness) {
  const Weights w = Weights::Int64(ReadmeLoads(), 2, 12);
  ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(w, ReadmePlan(), 8));
  EXPECT_THAT(m.max_gpu_load, ElementsAre(156.0, 179.5));
  EXPECT_THAT(m.lower_bound, ElementsAre(129.125, 144.5));
  EXPECT_THAT(m.balancedness, ElementsAre(DoubleNear(0.827724, 5e-7), DoubleNear(0.805014, 5e-7)));
  EXPECT_THAT(m.balancedness, ElementsAre(DoubleEq(129.125 / 156.0), DoubleEq(144.5 / 179.5)));
  EXPECT_NEAR(m.balancedness_aggregate, 0.815574, 5e-7);
  EXPECT_THAT(m.imbalance_ratio, ElementsAre(DoubleEq((156.0 - 129.125) / 129.125), DoubleEq((179.5 - 144.5) / 144.5)));
  EXPECT_DOUBLE_EQ(m.imbalance_ratio_aggregate, 335.5 / 273.625 - 1);
  EXPECT_EQ(m.gpus_holding_duplicate_replicas, 0);
}

TEST(MetricsTest, DuplicatesAndZeroLoads) {
  // One layer, 2 experts, 4 slots on 2 GPUs: GPU 0 holds expert 0 twice.
  const std::vector<int64_t> loads = {0, 0};
  ASSERT_OK_AND_ASSIGN(Placement p, PlacementFromPhy2Log(1, 2, 4, {0, 0, 1, 1}));
  ASSERT_OK_AND_ASSIGN(PlacementMetrics m, ComputeMetrics(Weights::Int64(loads, 1, 2), p, 2));
  EXPECT_THAT(m.balancedness, ElementsAre(1.0));  // all zero: perfect
  EXPECT_THAT(m.imbalance_ratio, ElementsAre(0.0));
  EXPECT_EQ(m.balancedness_aggregate, 1.0);
  EXPECT_EQ(m.gpus_holding_duplicate_replicas, 2);
}

TEST(MetricsTest, RejectsMismatchedInputs) {
  const Weights w = Weights::Int64(ReadmeLoads(), 2, 12);
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ComputeMetrics(w, ReadmePlan(), 3), StatusIs(kInvalid, HasSubstr("num_gpus: expected a positive "
                                                                               "divisor of num_replicas = 16, got 3")));
  const Weights one_layer = Weights::Int64(absl::MakeConstSpan(ReadmeLoads()).subspan(0, 12), 1, 12);
  EXPECT_THAT(ComputeMetrics(one_layer, ReadmePlan(), 8),
              StatusIs(kInvalid, HasSubstr("expected 1 layers x 12 experts")));
  Placement broken = ReadmePlan();
  broken.logcnt[0] = 2;
  EXPECT_THAT(ComputeMetrics(w, broken, 8), StatusIs(kInvalid, HasSubstr("logcnt[0][0]: expected 1")));
}

}  // namespace
}  // namespace tandem::balance
