#include "balance/eplb.h"

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "balance/metrics.h"
#include "balance/placement.h"
#include "balance/testing/eplb_vectors.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::balance::testing::CompareOutputs;
using ::tandem::balance::testing::LoadVectorCases;
using ::tandem::balance::testing::VectorCase;

absl::StatusOr<Placement> Solve(const VectorCase& c, Mode mode) {
  RebalanceOptions options;
  options.mode = mode;
  return RebalanceExperts(c.problem.weights(), c.problem.num_replicas,
                          c.problem.num_groups, c.problem.num_nodes,
                          c.problem.num_gpus, options);
}

// Every shared vector matches the reference's three outputs exactly.
TEST(EplbParityTest, ReferenceModeMatchesEveryCase) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  ASSERT_EQ(cases.size(), 24u);
  int matched = 0;
  for (const VectorCase& c : cases) {
    ASSERT_OK_AND_ASSIGN(Placement p, Solve(c, Mode::kReference));
    const std::vector<std::string> diffs = CompareOutputs(p, c.reference);
    EXPECT_TRUE(diffs.empty()) << c.name << ": " << absl::StrJoin(diffs, "; ");
    matched += diffs.empty();
  }
  std::cout << "reference mode: " << matched << "/" << cases.size()
            << " cases match phy2log, log2phy and logcnt\n";
  EXPECT_EQ(matched, static_cast<int>(cases.size()));
}

// Stable mode matches each case's stable_sort_variant.
TEST(EplbParityTest, StableModeMatchesStableVariants) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  int matched = 0;
  for (const VectorCase& c : cases) {
    ASSERT_OK_AND_ASSIGN(Placement p, Solve(c, Mode::kStable));
    const std::vector<std::string> diffs = CompareOutputs(p, c.stable);
    EXPECT_TRUE(diffs.empty()) << c.name << ": " << absl::StrJoin(diffs, "; ");
    matched += diffs.empty();
  }
  std::cout << "stable mode: " << matched << "/" << cases.size()
            << " cases match the stable-sort variants\n";
  EXPECT_EQ(matched, static_cast<int>(cases.size()));
}

}  // namespace
}  // namespace tandem::balance
