#include "schedule/simulator/phase_program.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

PhaseCosts Costs() {
  PhaseCosts c;
  c.ep = 2;
  c.ep_link = {10, 1};  // 10 us + 1 GB/s: 30 kB to the one peer = 10 + 30 = 40 us
  return c;
}

// A pass alone: compute, then the exchange runs while the next compute does;
// the wait catches up with it: 100 + max(30, 40) + 20.
TEST(PhaseProgramTest, APassWaitsOnlyForWhatItsComputeDidNotHide) {
  const PhaseCosts c = Costs();
  const PhaseProgram p = {PhaseStep::Compute(100), PhaseStep::Post(0, 30000, "dispatch"), PhaseStep::Compute(30),
                          PhaseStep::Wait(0), PhaseStep::Compute(20)};
  const PhaseTimeline t = SimulatePass(p, c);
  EXPECT_DOUBLE_EQ(t.duration, 160);
  ASSERT_EQ(t.exchanges.size(), 1u);
  EXPECT_DOUBLE_EQ(t.exchanges[0].start, 100);
  EXPECT_DOUBLE_EQ(t.exchanges[0].end, 140);
  EXPECT_EQ(t.exchanges[0].label, "dispatch");
}

// An F&B pair, interleaved at its yields: F computes 10 and posts
// (10..50), B computes 20 and posts, but the egress is busy until 50
// (50..90); F waits to 50 and computes to 60; B waits to 90 and computes to
// 110. Alone they would take 60 + 80 = 140.
TEST(PhaseProgramTest, APairInterleavesAtYieldsAndSharesOneEgress) {
  const PhaseCosts c = Costs();
  const PhaseProgram f = {PhaseStep::Compute(10), PhaseStep::Post(0, 30000), PhaseStep::Yield(), PhaseStep::Wait(0),
                          PhaseStep::Compute(10)};
  const PhaseProgram b = {PhaseStep::Compute(20), PhaseStep::Post(0, 30000), PhaseStep::Yield(), PhaseStep::Wait(0),
                          PhaseStep::Compute(20)};
  EXPECT_DOUBLE_EQ(SimulatePass(f, c).duration, 60);
  EXPECT_DOUBLE_EQ(SimulatePass(b, c).duration, 80);
  const PhaseTimeline pair = SimulatePair(f, b, c);
  EXPECT_DOUBLE_EQ(pair.duration, 110);
  ASSERT_EQ(pair.exchanges.size(), 2u);
  EXPECT_EQ(pair.exchanges[1].chain, 1);
  EXPECT_DOUBLE_EQ(pair.exchanges[1].start, 50);
  EXPECT_DOUBLE_EQ(pair.exchanges[1].end, 90);
  // Must-fail twin: without yields each pass is one step, F then B.
  PhaseProgram f1 = f, b1 = b;
  f1.erase(f1.begin() + 2);
  b1.erase(b1.begin() + 2);
  EXPECT_DOUBLE_EQ(SimulatePair(f1, b1, c).duration, 140);
  // A fixed exchange time overrides the bytes.
  const PhaseProgram fixed = {PhaseStep::PostTimed(0, 7), PhaseStep::Wait(0)};
  EXPECT_DOUBLE_EQ(SimulatePass(fixed, c).duration, 7);
}

TEST(PhaseProgramTest, ValidateNamesTheBadStep) {
  PhaseCosts c = Costs();
  c.f = {{PhaseStep::Wait(0)}};
  EXPECT_THAT(c.Validate(4), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("F of stage 0, step 0: waits for an exchange not posted before")));
  c.f = {{PhaseStep::Post(0, 10)}};
  EXPECT_THAT(c.Validate(4), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be waited for")));
  c.f = {{PhaseStep::Compute(-1)}};
  EXPECT_THAT(c.Validate(4), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite times")));
  c.f = {{}, {}};
  EXPECT_THAT(c.Validate(4), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 1 or 4")));
  c.f = {{PhaseStep::Post(0, 10), PhaseStep::Wait(0)}};
  EXPECT_OK(c.Validate(4));
}

}  // namespace
}  // namespace tandem::schedule
