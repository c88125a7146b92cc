#include "train/checkpoint.h"

#include <filesystem>
#include <fstream>

#include "balance/eplb.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::train {
namespace {

using ::tandem::testing::IsOkAndHolds;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(root == nullptr ? "/tmp" : root) + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

model::Tensor Filled(float v) {
  model::Tensor t = model::Tensor::Zeros({2});
  t.span()[0] = v;
  t.span()[1] = -v;
  return t;
}

TEST(CheckpointTest, UnitOfName) {
  EXPECT_THAT(UnitOfName("input_proj.weight", 6), IsOkAndHolds(0));
  EXPECT_THAT(UnitOfName("layers.0.norm.weight", 6), IsOkAndHolds(1));
  EXPECT_THAT(UnitOfName("optim.exp_avg.layers.3.moe.experts.7.w1.weight", 6), IsOkAndHolds(4));
  EXPECT_THAT(UnitOfName("norm.weight", 6), IsOkAndHolds(5));
  EXPECT_THAT(UnitOfName("head.weight", 6), IsOkAndHolds(5));
  EXPECT_THAT(UnitOfName("layers.4.norm.weight", 6),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected")));
  EXPECT_THAT(UnitOfName("mystery", 6), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'mystery'")));
}

// Each tensor comes from the stage that trains its unit; stale copies in
// the other stages' files are ignored.
TEST(CheckpointTest, MergeTakesEachUnitFromItsStage) {
  std::vector<model::SafetensorsFile> stages(2);
  const std::vector<std::string> names = {"input_proj.weight", "layers.0.norm.weight", "optim.m.layers.1.x",
                                          "head.weight"};
  for (int st = 0; st < 2; ++st) {
    for (const std::string& n : names) stages[st].tensors.emplace_back(n, Filled(10.0f * st + 1));
    stages[st].metadata["tandem.config"] = "c";
  }
  ASSERT_OK_AND_ASSIGN(model::SafetensorsFile merged, MergeStages(stages, {0, 2, 4}, {{kStepKey, "7"}}));
  ASSERT_EQ(merged.tensors.size(), 4u);
  EXPECT_EQ(merged.tensors[0].second.span()[0], 1.0f);   // unit 0: stage 0
  EXPECT_EQ(merged.tensors[1].second.span()[0], 1.0f);   // unit 1: stage 0
  EXPECT_EQ(merged.tensors[2].second.span()[0], 11.0f);  // unit 2: stage 1
  EXPECT_EQ(merged.tensors[3].second.span()[0], 11.0f);  // unit 3: stage 1
  EXPECT_EQ(merged.metadata.at(kStepKey), "7");
  EXPECT_EQ(merged.metadata.at("tandem.config"), "c");
  // Fingerprints see every bit.
  model::SafetensorsFile other = merged;
  other.tensors[2].second = Filled(11.000001f);
  EXPECT_NE(Fingerprint(other), Fingerprint(merged));
  EXPECT_EQ(Fingerprint(merged).size(), 16u);
  stages[1].tensors.pop_back();
  EXPECT_THAT(MergeStages(stages, {0, 2, 4}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage 1's file lacks 'head.weight'")));
}

// Written through a temporary and a rename; the newest `keep` stay; a
// crashed writer's temporary is neither read nor kept.
TEST(CheckpointTest, WritesAtomicallyAndKeepsTheNewest) {
  const std::string dir = TempDir("ckpt");
  model::SafetensorsFile f;
  f.tensors.emplace_back("head.weight", Filled(1));
  std::filesystem::create_directories(dir + "/.step-9.tmp");
  std::ofstream(dir + "/.step-9.tmp/checkpoint.safetensors") << "half";
  for (int step : {2, 4, 6}) ASSERT_OK(WriteCheckpoint(dir, step, f, 2).status());
  EXPECT_FALSE(std::filesystem::exists(dir + "/step-2"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/step-4/checkpoint.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/.step-9.tmp"));
  EXPECT_THAT(LatestCheckpoint(dir), IsOkAndHolds(dir + "/step-6"));
  ASSERT_OK_AND_ASSIGN(model::SafetensorsFile back, model::ReadSafetensors(CheckpointFile(dir + "/step-6")));
  EXPECT_EQ(Fingerprint(back), Fingerprint(f));
  EXPECT_THAT(LatestCheckpoint(TempDir("empty")), StatusIs(absl::StatusCode::kNotFound, HasSubstr("empty")));
  EXPECT_THAT(WriteCheckpoint(dir, 8, f, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected")));
}

TEST(CheckpointTest, PlacementRoundTripsWithReplicaOrder) {
  std::vector<int64_t> loads = {5, 1, 9, 3, 2, 8, 7, 4};
  ASSERT_OK_AND_ASSIGN(balance::Placement p,
                       balance::RebalanceExperts(balance::Weights::Int64(loads, 2, 4), 6, 1, 1, 2));
  ASSERT_OK_AND_ASSIGN(balance::Placement back, PlacementFromMetadata(PlacementMetadata(p), 2, 4));
  EXPECT_EQ(back.phy2log, p.phy2log);
  EXPECT_EQ(back.log2phy, p.log2phy);
  EXPECT_THAT(PlacementFromMetadata("2 6 0:0", 2, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2 layers")));
  EXPECT_THAT(PlacementFromMetadata(PlacementMetadata(p), 3, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected")));
}

TEST(CheckpointTest, LoadWindowRoundTrips) {
  const std::vector<std::vector<int64_t>> steps = {{1, 2, 3, 4, 5, 6}, {0, 0, 7, 8, 9, 10}};
  EXPECT_THAT(LoadsFromMetadata(LoadsMetadata(steps, 2, 3), 2, 3), IsOkAndHolds(steps));
  EXPECT_THAT(LoadsFromMetadata(LoadsMetadata({}, 2, 3), 2, 3), IsOkAndHolds(std::vector<std::vector<int64_t>>{}));
  EXPECT_THAT(LoadsFromMetadata(LoadsMetadata(steps, 2, 3), 3, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected steps of 3 x 2 counts")));
  EXPECT_THAT(LoadsFromMetadata("1 1 2 5 -1", 1, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count 1: expected >= 0, got '-1'")));
  EXPECT_THAT(LoadsFromMetadata("1 1 2 5", 1, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 x 2")));
}

}  // namespace
}  // namespace tandem::train
