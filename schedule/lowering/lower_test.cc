#include "schedule/lowering/lower.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<std::string> Names(const Schedule& s, int r) {
  std::vector<std::string> out;
  for (const Action& a : s.programs[r].actions) out.push_back(DescribeAction(s, a));
  return out;
}

// PyTorch's _add_send_recv on 1F1B with 2 ranks and 2 micro-batches, worked
// by hand: the sender places the receiver's RECV when its action is
// scheduled, round-robin over ranks.
TEST(LowerTest, TorchStyleOneFOneB) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 2, 2}));
  ASSERT_OK_AND_ASSIGN(Schedule l, Lower(s, CommStyle::kTorch));
  EXPECT_THAT(Names(l, 0),
              ::testing::ElementsAre("F s0 mb0", "SEND_F s0 mb0 -> r1", "F s0 mb1", "SEND_F s0 mb1 -> r1",
                                     "RECV_B s0 mb0 <- r1", "B s0 mb0", "RECV_B s0 mb1 <- r1", "B s0 mb1"));
  // Round 2: rank 0's F1 places RECV_F mb1 on rank 1 before rank 1 runs B0.
  EXPECT_THAT(Names(l, 1),
              ::testing::ElementsAre("RECV_F s1 mb0 <- r0", "F s1 mb0", "RECV_F s1 mb1 <- r0", "B s1 mb0",
                                     "SEND_B s1 mb0 -> r0", "F s1 mb1", "B s1 mb1", "SEND_B s1 mb1 -> r0"));
  // Receives are waited on right before their consumer, sends at the end.
  const RankProgram& p1 = l.programs[1];
  EXPECT_EQ(p1.batches[p1.actions[0].batch].wait_before, 1);
  EXPECT_EQ(p1.batches[p1.actions[2].batch].wait_before, 5);
  EXPECT_EQ(p1.batches[p1.actions[4].batch].wait_before, 8);
}

// The V turnaround (stages r and 2R-1-r on the last rank) needs no message.
TEST(LowerTest, VTurnaroundStaysLocal) {
  ASSERT_OK_AND_ASSIGN(Schedule l, Lower(*Generate({Kind::kZBV, 2, 4})));
  for (const Action& a : l.programs[1].actions) {
    if (IsComm(a.op)) {
      EXPECT_EQ(a.peer, 0);
    }
    if (a.op == Op::kRecvF) {
      EXPECT_NE(a.stage, 2) << "stage 2 gets its input locally from stage 1";
    }
  }
}

TEST(LowerTest, BatchedStyleWaitsBeforeTheNextCompute) {
  ASSERT_OK_AND_ASSIGN(Schedule l, Lower(*Generate({Kind::kGPipe, 2, 1}), CommStyle::kBatched));
  EXPECT_THAT(Names(l, 0),
              ::testing::ElementsAre("F s0 mb0", "SEND_F s0 mb0 -> r1", "RECV_B s0 mb0 <- r1", "B s0 mb0"));
  EXPECT_EQ(l.programs[0].batches.size(), 1);
  EXPECT_EQ(l.programs[0].batches[0].wait_before, 3);
}

TEST(LowerTest, ErrorsNameTheProblem) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipe, 4, 8}));
  EXPECT_THAT(Lower(s, CommStyle::kTorch),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dualpipe places each stage on two ranks")));
  ASSERT_OK_AND_ASSIGN(Schedule l, Lower(s));
  EXPECT_THAT(Lower(l), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already lowered")));
  // A backward before any forward on the last rank can never become ready.
  ASSERT_OK_AND_ASSIGN(Schedule g, Generate({Kind::kGPipe, 2, 1}));
  std::swap(g.programs[0].actions[0], g.programs[0].actions[1]);
  EXPECT_THAT(Lower(g, CommStyle::kTorch),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed compute schedule: no action can become "
                                                                     "ready: rank 0 position 0 (B s0 mb0)")));
}

// A hand-edited DualPipe program falls back to generic batching.
TEST(LowerTest, EditedDualPipeUsesGenericBatching) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipe, 2, 4}));
  ASSERT_OK_AND_ASSIGN(Schedule exact, Lower(s));
  std::swap(s.programs[0].actions.back(), s.programs[0].actions[s.programs[0].actions.size() - 2]);
  ASSERT_OK_AND_ASSIGN(Schedule generic, Lower(s));
  EXPECT_NE(exact.programs[0].actions, generic.programs[0].actions);
}

}  // namespace
}  // namespace tandem::schedule
