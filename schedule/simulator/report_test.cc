#include "schedule/simulator/report.h"

#include <string>
#include <vector>

#include "base/strict_json.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

SimOptions Costs(double f, double b) {
  SimOptions o;
  o.cost.f = {f};
  o.cost.b = {b};
  return o;
}

TEST(FormatSimulationTest, JsonHoldsTheClosedFormOf1F1B) {
  // p ranks, n micro-batches, no transfer time: makespan (n + p - 1)(F + B).
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 4, 8, 0}));
  ASSERT_OK_AND_ASSIGN(SimResult r, Simulate(s, Costs(1, 2)));
  ASSERT_OK_AND_ASSIGN(std::string text, FormatSimulation(s, r, "json", /*critical_path=*/true));
  ASSERT_OK_AND_ASSIGN(json::Json j, json::Parse(text));
  EXPECT_EQ(j["kind"], "1f1b");
  EXPECT_EQ(j["makespan"], 33.0);
  EXPECT_EQ(j["bubble"], 9.0);
  ASSERT_EQ(j["per_rank"].size(), 4u);
  EXPECT_EQ(j["per_rank"][3]["busy"], 24.0);
  EXPECT_FALSE(j["critical_path"].empty());
  ASSERT_OK_AND_ASSIGN(std::string summary, FormatSimulation(s, r, "summary", false));
  EXPECT_THAT(summary, HasSubstr("makespan 33, bubble 9"));
  EXPECT_THAT(FormatSimulation(s, r, "yaml", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format: expected summary or json, got 'yaml'")));
}

TEST(CompareKindsTest, EveryKindOnceWithScaledCosts) {
  ASSERT_OK_AND_ASSIGN(std::vector<KindComparison> rows, CompareKinds(4, 8, 0, Costs(1, 2)));
  ASSERT_EQ(rows.size(), GeneratedKinds().size());
  for (const KindComparison& r : rows) {
    SCOPED_TRACE(r.kind);
    EXPECT_TRUE(r.error.empty()) << r.error;
    // Each kind does the same work per rank: n (F + B) = 24 at rank-sized stages.
    EXPECT_GE(r.makespan, 24.0);
  }
  EXPECT_EQ(rows[1].kind, "1f1b");
  EXPECT_EQ(rows[1].makespan, 33.0);
  ASSERT_OK_AND_ASSIGN(std::vector<KindComparison> odd, CompareKinds(4, 7, 0, Costs(1, 2)));
  int rejected = 0;
  for (const KindComparison& r : odd) rejected += !r.error.empty();
  EXPECT_GE(rejected, 1);  // dualpipe needs an even count
  ASSERT_OK_AND_ASSIGN(std::string text, FormatComparison(4, 8, Costs(1, 2).cost, rows, "json"));
  ASSERT_OK_AND_ASSIGN(json::Json j, json::Parse(text));
  EXPECT_EQ(j["kinds"].size(), rows.size());
  EXPECT_THAT(CompareKinds(0, 8, 0, Costs(1, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ranks: expected >= 1, got 0")));
  EXPECT_THAT(FormatComparison(4, 8, Costs(1, 2).cost, rows, "csv"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format: expected json or table, got 'csv'")));
}

}  // namespace
}  // namespace tandem::schedule
