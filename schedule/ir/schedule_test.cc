#include "schedule/ir/schedule.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::IsOkAndHolds;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ScheduleTest, KindNamesRoundTrip) {
  for (Kind k : GeneratedKinds()) EXPECT_THAT(ParseKind(KindName(k)), IsOkAndHolds(k));
  EXPECT_THAT(ParseKind("DualPipeV"), IsOkAndHolds(Kind::kDualPipeV));
  EXPECT_THAT(ParseKind("zigzag"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown schedule kind 'zigzag'")));
}

// Placements against their closed forms.
TEST(ScheduleTest, PlacementsFollowTheirRules) {
  ASSERT_OK_AND_ASSIGN(Schedule dp, MakeShell(Kind::kDualPipe, 4, 8, 2));
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(dp.RankOf(0, r), r);
    EXPECT_EQ(dp.RankOf(1, 3 - r), r);
    EXPECT_EQ(dp.where(1, 3 - r).chunk, 1);
  }
  ASSERT_OK_AND_ASSIGN(Schedule v, MakeShell(Kind::kZBV, 3, 6, 2));
  EXPECT_EQ(v.stages, 6);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(v.RankOf(0, r), r);
    EXPECT_EQ(v.RankOf(0, 5 - r), r);
  }
  ASSERT_OK_AND_ASSIGN(Schedule looped, MakeShell(Kind::kInterleaved1F1B, 4, 8, 3));
  EXPECT_EQ(looped.stages, 12);
  for (int s = 0; s < 12; ++s) {
    EXPECT_EQ(looped.where(0, s).rank, s % 4);
    EXPECT_EQ(looped.where(0, s).chunk, s / 4);
  }
  int dir = -1;
  EXPECT_EQ(dp.StageAt(1, 1, &dir), 2);
  EXPECT_EQ(dir, 1);
  EXPECT_EQ(dp.StageAt(1, 5, &dir), -1);
}

TEST(ScheduleTest, ShapeErrorsNameTheField) {
  EXPECT_THAT(MakeShell(Kind::kZBV, 4, 8, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, "chunks: expected 2 for zbv, got 3"));
  EXPECT_THAT(MakeShell(Kind::k1F1B, 0, 8, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ranks: expected 1..")));
  ASSERT_OK_AND_ASSIGN(Schedule s, MakeShell(Kind::k1F1B, 2, 2, 1));
  s.placement[1] = {0, 0};
  EXPECT_THAT(CheckShape(s),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank 0 chunk 0 holds both stage 0")));
}

TEST(ScheduleTest, ComputeOnlyDropsCommunication) {
  ASSERT_OK_AND_ASSIGN(Schedule s, MakeShell(Kind::k1F1B, 2, 1, 1));
  s.lowered = true;
  s.programs[0].actions = {Action::Compute(Op::kForward, 0, 0), Action::Comm(Op::kSendF, 0, 0, 0, 1, 0)};
  s.programs[0].batches = {{2}};
  const Schedule c = ComputeOnly(s);
  EXPECT_FALSE(c.lowered);
  ASSERT_EQ(c.programs[0].actions.size(), 1);
  EXPECT_EQ(c.programs[0].actions[0].op, Op::kForward);
  EXPECT_TRUE(c.programs[0].batches.empty());
  EXPECT_EQ(DescribeAction(s, s.programs[0].actions[1]), "SEND_F s0 mb0 -> r1");
}

}  // namespace
}  // namespace tandem::schedule
