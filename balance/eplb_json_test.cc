#include "balance/eplb_json.h"

#include <cstdint>
#include <vector>

#include "balance/metrics.h"
#include "balance/placement.h"
#include "base/strict_json.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

absl::StatusOr<Problem> FromText(const char* text) {
  absl::StatusOr<json::Json> v = json::Parse(text);
  if (!v.ok()) return v.status();
  return ProblemFromJson(*v);
}

TEST(EplbJsonTest, ReadsAProblem) {
  ASSERT_OK_AND_ASSIGN(Problem p, FromText(R"({"weight": [[1, 2], [3, 4]],
      "num_replicas": 4, "num_groups": 2, "num_nodes": 1, "num_gpus": 2})"));
  EXPECT_EQ(p.num_layers, 2);
  EXPECT_EQ(p.num_experts, 2);
  EXPECT_EQ(p.type, Weights::Type::kInt64);
  EXPECT_THAT(p.int64_loads, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(p.weights().num_layers(), 2);
  EXPECT_EQ(p.num_gpus, 2);
}

TEST(EplbJsonTest, DtypeIsDeclaredOrInferred) {
  ASSERT_OK_AND_ASSIGN(Problem inferred, FromText(R"({"weight": [[1, 2.5]],
      "num_replicas": 2, "num_groups": 1, "num_nodes": 1, "num_gpus": 1})"));
  EXPECT_EQ(inferred.type, Weights::Type::kFloat32);
  EXPECT_THAT(inferred.float32_loads, ElementsAre(1.0f, 2.5f));
  ASSERT_OK_AND_ASSIGN(Problem declared, FromText(R"({"weight": [[1, 2]],
      "weight_dtype": "float32", "num_replicas": 2, "num_groups": 1,
      "num_nodes": 1, "num_gpus": 1})"));
  EXPECT_EQ(declared.type, Weights::Type::kFloat32);
  EXPECT_THAT(FromText(R"({"weight": [[1, 2.5]], "weight_dtype": "int64",
      "num_replicas": 2, "num_groups": 1, "num_nodes": 1, "num_gpus": 1})"),
              StatusIs(kInvalid, HasSubstr("weight[0][1]: expected an "
                                           "integer, got 2.5")));
  EXPECT_THAT(FromText(R"({"weight": [[1]], "weight_dtype": "bf16"})"),
              StatusIs(kInvalid, HasSubstr("weight_dtype: expected \"int64\" "
                                           "or \"float32\", got \"bf16\"")));
}

TEST(EplbJsonTest, NamesMissingAndMalformedFields) {
  EXPECT_THAT(FromText("[1]"), StatusIs(kInvalid, HasSubstr("input: expected an object")));
  EXPECT_THAT(FromText("{}"), StatusIs(kInvalid, HasSubstr("weight: expected a field")));
  EXPECT_THAT(FromText(R"({"weight": []})"), StatusIs(kInvalid, HasSubstr("weight: expected a non-empty "
                                                                          "array of rows, got []")));
  EXPECT_THAT(FromText(R"({"weight": [[1, 2], [3]]})"), StatusIs(kInvalid, HasSubstr("weight[1]: expected a row of 2 "
                                                                                     "values, got [3]")));
  EXPECT_THAT(FromText(R"({"weight": [[1, "x"]], "weight_dtype": "float32"})"),
              StatusIs(kInvalid, HasSubstr("weight[0][1]: expected a number, "
                                           "got \"x\"")));
  EXPECT_THAT(FromText(R"({"weight": [[1]], "num_replicas": 2})"),
              StatusIs(kInvalid, HasSubstr("num_groups: expected a field")));
  EXPECT_THAT(FromText(R"({"weight": [[1]], "num_replicas": 2.5})"),
              StatusIs(kInvalid, HasSubstr("num_replicas: expected an "
                                           "integer, got 2.5")));
  EXPECT_THAT(FromText(R"({"weight": [[1]], "num_replicas": 1e12})"), StatusIs(kInvalid, HasSubstr("num_replicas")));
}

TEST(EplbJsonTest, ReadsCsv) {
  Problem p;
  ASSERT_OK(LoadsFromCsv("# header\n1, 2,3\n\n4,5,6\n", &p));
  EXPECT_EQ(p.num_layers, 2);
  EXPECT_EQ(p.num_experts, 3);
  EXPECT_EQ(p.type, Weights::Type::kInt64);
  EXPECT_THAT(p.int64_loads, ElementsAre(1, 2, 3, 4, 5, 6));
  ASSERT_OK(LoadsFromCsv("0.5,2\n", &p));
  EXPECT_EQ(p.type, Weights::Type::kFloat32);
  EXPECT_THAT(p.float32_loads, ElementsAre(0.5f, 2.0f));
  EXPECT_TRUE(p.int64_loads.empty());
  EXPECT_THAT(LoadsFromCsv("1,2\n3,x\n", &p), StatusIs(kInvalid, HasSubstr("line 2: expected a number, got "
                                                                           "'x'")));
  EXPECT_THAT(LoadsFromCsv("1,2\n\n3\n", &p), StatusIs(kInvalid, HasSubstr("line 3: expected 2 loads")));
  EXPECT_THAT(LoadsFromCsv("# nothing\n", &p), StatusIs(kInvalid, HasSubstr("at least one row")));
}

TEST(EplbJsonTest, PlacementRoundTrip) {
  ASSERT_OK_AND_ASSIGN(Placement p, MakePlacement(2, 3, 4, {0, 1, 2, 1, 2, 2, 1, 0}, {0, 1, 0, 0, 0, 1, 0, 0}));
  const json::Json v = PlacementToJson(p);
  EXPECT_EQ(json::Dump(v).value(), R"({"phy2log":[[0,1,2,1],[2,2,1,0]],)"
                                   R"("log2phy":[[[0,-1],[3,1],[2,-1]],[[3,-1],[2,-1],[0,1]]],)"
                                   R"("logcnt":[[1,2,1],[1,1,2]]})");
  int replicas = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> phy2log, Phy2LogFromJson(v, 2, &replicas));
  EXPECT_EQ(replicas, 4);
  EXPECT_EQ(phy2log, p.phy2log);
  EXPECT_THAT(Phy2LogFromJson(v, 3, &replicas), StatusIs(kInvalid, HasSubstr("phy2log: expected 3 layers")));
  EXPECT_THAT(Phy2LogFromJson(json::Json::object(), 2, &replicas),
              StatusIs(kInvalid, HasSubstr("phy2log: expected a field")));
}

TEST(EplbJsonTest, MetricsFields) {
  PlacementMetrics m;
  m.balancedness = {0.5};
  m.max_gpu_load = {4};
  m.lower_bound = {2};
  m.balancedness_aggregate = 0.5;
  m.imbalance_ratio_aggregate = 1;
  EXPECT_EQ(json::Dump(MetricsToJson(m)).value(), R"({"balancedness_per_layer":[0.5],"balancedness_aggregate":0.5,)"
                                                  R"("max_gpu_load_per_layer":[4.0],"lower_bound_per_layer":[2.0],)"
                                                  R"("imbalance_ratio_aggregate":1.0,)"
                                                  R"("gpus_holding_duplicate_replicas":0})");
}

}  // namespace
}  // namespace tandem::balance
