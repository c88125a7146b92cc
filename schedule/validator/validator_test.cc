#include "schedule/validator/validator.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

Schedule Gen(Kind kind, int ranks, int n, int chunks = 0) {
  absl::StatusOr<Schedule> s = Generate({kind, ranks, n, chunks});
  EXPECT_OK(s);
  return *s;
}

Schedule Lowered(const Schedule& s) {
  absl::StatusOr<Schedule> l = Lower(s);
  EXPECT_OK(l);
  return *l;
}

// Every generated kind, compute-only and lowered, over a grid of sizes.
TEST(ValidatorTest, AcceptsEveryGeneratedSchedule) {
  int checked = 0;
  for (Kind kind : GeneratedKinds()) {
    for (int ranks : {1, 2, 3, 4, 8}) {
      for (int n : {1, 2, 3, 5, 8, 16, 17}) {
        absl::StatusOr<Schedule> s = Generate({kind, ranks, n});
        if (!s.ok()) continue;  // precondition; tested in generate_test
        SCOPED_TRACE(std::string(KindName(kind)) + " ranks=" + std::to_string(ranks) + " n=" + std::to_string(n));
        EXPECT_OK(Validate(*s));
        EXPECT_OK(Validate(Lowered(*s)));
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 150);
}

// DualPipe's wait-in-full batching is not safe for every order: on an
// interleaved schedule both ranks wait for a receive the other posts later.
TEST(ValidatorTest, BatchedLoweringOfInterleavedDeadlocks) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Lower(Gen(Kind::kInterleaved1F1B, 2, 8), CommStyle::kBatched));
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("deadlock: rank 0 position 15 (before F s0 mb3); waits for rank 1")));
}

// A corrupted in-memory op value is an error naming it, not a crash.
TEST(ValidatorTest, UnknownOpIsAnError) {
  Schedule s = Gen(Kind::k1F1B, 2, 4);
  s.programs[1].actions[2].op = static_cast<Op>(200);
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank 1 position 2 (? s1 mb")));
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown op")));
}

TEST(ValidatorTest, MissingBackwardIsNamed) {
  Schedule s = Gen(Kind::k1F1B, 4, 8);
  s.programs[2].actions.pop_back();  // the last B of rank 2
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("rank 2: stage 2 direction 0 micro-batch 7 has no backward")));
}

TEST(ValidatorTest, BackwardBeforeForwardIsNamedWithContext) {
  Schedule s = Gen(Kind::kGPipe, 2, 2);
  // rank 1: F0 F1 B0 B1 -> B0 F0 F1 B1
  auto& p = s.programs[1].actions;
  std::rotate(p.begin(), p.begin() + 2, p.begin() + 3);
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("rank 1 position 0 (B s1 mb0): backward before its forward")));
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("> [0] B s1 mb0")));
}

TEST(ValidatorTest, WeightBeforeInputBackward) {
  Schedule s = Gen(Kind::kZB1P, 2, 4, 1);
  auto& p = s.programs[0].actions;
  const auto w = std::find_if(p.begin(), p.end(), [](const Action& a) { return a.op == Op::kBackwardWeight; });
  ASSERT_NE(w, p.end());
  std::rotate(p.begin(), w, w + 1);
  EXPECT_THAT(Validate(s),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight gradient before its input backward")));
}

TEST(ValidatorTest, ActionOnTheWrongRank) {
  Schedule s = Gen(Kind::kGPipe, 2, 1);
  s.programs[0].actions[0].stage = 1;
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("stage 1 direction 0 is placed on rank 1, not here")));
}

TEST(ValidatorTest, CrossRankCycleInComputeOnlyProgram) {
  Schedule s = Gen(Kind::kGPipe, 2, 2);
  // rank 0 runs B0 (needs rank 1's B0) before F1; rank 1 needs F1 for ... ok,
  // make rank 1 run F1 before F0 and rank 0 run F1 only after B0.
  auto& p0 = s.programs[0].actions;  // F0 F1 B0 B1
  std::swap(p0[1], p0[2]);           // F0 B0 F1 B1
  auto& p1 = s.programs[1].actions;  // F0 F1 B0 B1
  std::swap(p1[0], p1[1]);           // F1 F0 B0 B1
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dependency cycle")));
}

TEST(ValidatorTest, MismatchedReceiveOrderIsNamed) {
  Schedule s = Lowered(Gen(Kind::kGPipe, 2, 2));
  // Rank 1 expects mb 1 first: the k-th receive no longer matches the k-th send.
  int first = -1;
  auto& p = s.programs[1].actions;
  for (int k = 0; k < static_cast<int>(p.size()); ++k) {
    if (p[k].op != Op::kRecvF) continue;
    if (first < 0) {
      first = k;
    } else {
      std::swap(p[first].mb, p[k].mb);
      break;
    }
  }
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("rank 1 position 0 (RECV_F s1 mb1 <- r0): receive #0 from rank 0 "
                                              "does not match send #0 there: expected RECV_F s1 mb0")));
}

// Communication errors come in program order, whichever the validator meets
// first: rank 1's receive at position 2 is waited on after its consumer (at
// position 5), which shows only there, past the early send at position 3.
TEST(ValidatorTest, CommunicationErrorsComeInProgramOrder) {
  Schedule s = Lowered(Gen(Kind::k1F1B, 2, 2));
  auto& p = s.programs[1];  // RECV_F 0, F 0, RECV_F 1, B 0, SEND_B 0, F 1, B 1, SEND_B 1
  ASSERT_EQ(p.actions.size(), 8);
  ASSERT_EQ(p.actions[2].op, Op::kRecvF);
  ASSERT_EQ(p.actions[3].op, Op::kBackward);
  ASSERT_EQ(p.actions[5].op, Op::kForward);
  std::swap(p.actions[3], p.actions[4]);  // the gradient is sent before B computes it
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("rank 1 position 3 (SEND_B s1 mb0 -> r0): send of a gradient before "
                                              "its backward ran on this rank")));
  p.batches[p.actions[2].batch].wait_before = 6;
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("rank 1 position 2 (RECV_F s1 mb1 <- r0): waited on at position 6, "
                                              "after its consumer at position 5")));
}

TEST(ValidatorTest, RendezvousDeadlockIsReported) {
  Schedule s = Lowered(Gen(Kind::k1F1B, 2, 2));
  // Rank 0 posts and waits for the gradient of mb 0 before its first
  // forward: the gradient needs that forward, so the ranks wait in a cycle.
  auto& p = s.programs[0].actions;
  const auto recv = std::find_if(p.begin(), p.end(), [](const Action& a) { return a.op == Op::kRecvB && a.mb == 0; });
  ASSERT_NE(recv, p.end());
  std::rotate(p.begin(), recv, recv + 1);
  SetTorchWaits(&s);
  s.programs[0].batches[p[0].batch].wait_before = 1;
  EXPECT_THAT(Validate(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("deadlock: rank 0 position 1 (before F s0 mb0); waits for rank 1")));
}

}  // namespace
}  // namespace tandem::schedule
