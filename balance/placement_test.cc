#include "balance/placement.h"

#include <cstdint>
#include <vector>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(PlacementTest, MakePlacementListsReplicasByRank) {
  // Expert 1's rank-0 replica is in slot 3, rank 1 in slot 1.
  ASSERT_OK_AND_ASSIGN(Placement p, MakePlacement(1, 3, 4, {0, 1, 2, 1}, {0, 1, 0, 0}));
  EXPECT_EQ(p.max_count, 2);
  EXPECT_THAT(p.logcnt, ElementsAre(1, 2, 1));
  EXPECT_THAT(p.log2phy, ElementsAre(0, -1, 3, 1, 2, -1));
  EXPECT_OK(ValidatePlacement(p, 2));
  EXPECT_OK(ValidatePlacement(p, 4));
}

TEST(PlacementTest, FromPhy2LogRanksBySlot) {
  ASSERT_OK_AND_ASSIGN(Placement p, PlacementFromPhy2Log(1, 3, 4, {0, 1, 2, 1}));
  EXPECT_THAT(p.log2phy, ElementsAre(0, -1, 1, 3, 2, -1));
}

TEST(PlacementTest, MakePlacementRejectsBadInput) {
  EXPECT_THAT(MakePlacement(1, 3, 4, {0, 1, 2}, {0, 0, 0}),
              StatusIs(kInvalid, HasSubstr("expected phy2log and ranks of 1 x "
                                           "4 slots")));
  EXPECT_THAT(MakePlacement(1, 3, 4, {0, 1, 3, 1}, {0, 0, 0, 1}),
              StatusIs(kInvalid, HasSubstr("phy2log[0][2]: expected an expert "
                                           "id in [0, 3), got 3")));
  EXPECT_THAT(MakePlacement(1, 3, 4, {0, 1, 1, 1}, {0, 0, 1, 2}),
              StatusIs(kInvalid, HasSubstr("layer 0 expert 2: expected at "
                                           "least one replica, got 0")));
  EXPECT_THAT(MakePlacement(1, 3, 4, {0, 1, 2, 1}, {0, 0, 0, 0}),
              StatusIs(kInvalid, HasSubstr("rank of slot 3 in layer 0: "
                                           "expected a unique rank in [0, 2)")));
}

TEST(PlacementTest, ValidateFindsInconsistencies) {
  ASSERT_OK_AND_ASSIGN(const Placement good, MakePlacement(1, 3, 4, {0, 1, 2, 1}, {0, 1, 0, 0}));
  EXPECT_THAT(ValidatePlacement(good, 3), StatusIs(kInvalid, HasSubstr("num_gpus: expected a positive "
                                                                       "divisor of num_replicas = 4, got 3")));
  Placement p = good;
  p.log2phy[2] = 0;  // expert 1 rank 0 -> a slot holding expert 0
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("log2phy[0][1][0]: expected a new "
                                                                    "slot holding expert 1, got 0")));
  p = good;
  p.log2phy[3] = 3;  // the same slot twice
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("log2phy[0][1][1]")));
  p = good;
  p.log2phy[1] = 2;  // padding must be -1
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("log2phy[0][0][1]: expected -1")));
  p = good;
  p.phy2log[0] = 2;
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("logcnt")));
  p = good;
  p.phy2log.pop_back();
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("expected arrays of 4")));
  p = good;
  p.max_count = 3;
  p.log2phy = {0, -1, -1, 3, 1, -1, 2, -1, -1};
  EXPECT_THAT(ValidatePlacement(p, 2), StatusIs(kInvalid, HasSubstr("width: expected the largest count "
                                                                    "2, got 3")));
}

TEST(WeightsTest, ValidateNamesTheBadValue) {
  const std::vector<int64_t> ints = {1, 2, 3, -4};
  EXPECT_THAT(Weights::Int64(ints, 2, 2).Validate(), StatusIs(kInvalid, HasSubstr("weights[1][1]: expected a finite "
                                                                                  "load >= 0, got -4")));
  EXPECT_THAT(Weights::Int64(ints, 2, 3).Validate(), StatusIs(kInvalid, HasSubstr("expected 6 values")));
  EXPECT_THAT(Weights::Int64(ints, 4, 0).Validate(), StatusIs(kInvalid, HasSubstr("at least one expert, got 0")));
  const std::vector<float> floats = {1.5f, 0.0f};
  EXPECT_OK(Weights::Float32(floats, 1, 2).Validate());
  // int64 loads are cast to float32 as the reference does (2^24 + 1 rounds).
  const std::vector<int64_t> big = {(int64_t{1} << 24) + 1};
  EXPECT_EQ(Weights::Int64(big, 1, 1).AsFloat32(0), 16777216.0f);
  EXPECT_EQ(Weights::Int64(big, 1, 1).AsDouble(0), 16777217.0);
}

}  // namespace
}  // namespace tandem::balance
