#include "schedule/validator/rendezvous.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/ir/matching.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RendezvousTest, EveryGeneratedKindFinishes) {
  for (Kind kind : GeneratedKinds()) {
    ASSERT_OK_AND_ASSIGN(Schedule s, Generate({kind, 4, 16}));
    ASSERT_OK_AND_ASSIGN(Schedule lowered, Lower(s));
    ASSERT_OK_AND_ASSIGN(const MessageIndex m, MatchMessages(lowered));
    EXPECT_OK(CheckRendezvous(lowered, m)) << KindName(kind);
  }
}

// Must-fail twin: rank 0 waits for the gradient before it sends the
// activation rank 1 needs to produce it. Every rank blocks, and the error
// names each one and whom it waits for.
TEST(RendezvousTest, ReceivesBeforeSendsOnBothSidesDeadlock) {
  ASSERT_OK_AND_ASSIGN(Schedule s, MakeShell(Kind::kCustom, 2, 1, 1));
  s.lowered = true;
  // Rank 0 waits for a gradient from rank 1 before it sends the activation.
  s.programs[0].actions = {Action::Compute(Op::kForward, 0, 0), Action::Comm(Op::kRecvB, 0, 0, 0, 1, 0),
                           Action::Comm(Op::kSendF, 0, 0, 0, 1, 1), Action::Compute(Op::kBackward, 0, 0)};
  s.programs[0].batches = {{2}, {3}};
  s.programs[1].actions = {Action::Comm(Op::kRecvF, 1, 0, 0, 0, 0), Action::Compute(Op::kForward, 1, 0),
                           Action::Compute(Op::kBackward, 1, 0), Action::Comm(Op::kSendB, 1, 0, 0, 0, 1)};
  s.programs[1].batches = {{1}, {4}};
  ASSERT_OK_AND_ASSIGN(const MessageIndex m, MatchMessages(s));
  const absl::Status st = CheckRendezvous(s, m);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deadlock: rank 0 position 2 (before ")));
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank 1 position 1 (before ")));
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("waits for rank 1 to post position 3")));
  // Posting the send before waiting for the receive ends the deadlock.
  std::swap(s.programs[0].actions[1], s.programs[0].actions[2]);
  s.programs[0].actions[1].batch = 0;
  s.programs[0].actions[2].batch = 1;
  s.programs[0].batches = {{2}, {3}};
  ASSERT_OK_AND_ASSIGN(const MessageIndex fixed, MatchMessages(s));
  EXPECT_OK(CheckRendezvous(s, fixed));
}

}  // namespace
}  // namespace tandem::schedule
