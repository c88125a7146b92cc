#include "schedule/simulator/simulator.h"

#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/ir/matching.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/rendezvous.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

// The DualPipe README regime: I = F, B = I + W, W <= F, F&B <= F + B and
// zero P2P cost. Tuples are (F, I, W, F&B).
using Regime = std::tuple<double, double, double, double>;
const Regime kRegimes[] = {{1, 1, 1, 3}, {2, 2, 2, 5}, {3, 3, 2, 6}};
const CommSemantics kSemantics[] = {CommSemantics::kBuffered, CommSemantics::kRendezvous};

CostModel Cost(const Regime& r) {
  const auto [f, i, w, fb] = r;
  CostModel c;
  c.f = {f};
  c.i = {i};
  c.w = {w};
  c.b = {i + w};
  c.fb = {fb};
  return c;
}

SimResult SimulateKind(Kind kind, int ranks, int microbatches, const CostModel& cost, CommSemantics semantics,
                       int chunks = 0) {
  absl::StatusOr<Schedule> s = Generate({kind, ranks, microbatches, chunks});
  EXPECT_OK(s);
  absl::StatusOr<Schedule> lowered = Lower(*s);
  EXPECT_OK(lowered);
  absl::StatusOr<SimResult> r = Simulate(*lowered, {cost, semantics});
  EXPECT_OK(r);
  return *r;
}

// The README table (bubble and activations), exactly, in its regime.
TEST(SimulatorTest, ReproducesTheDualPipeReadmeTable) {
  for (const Regime& regime : kRegimes) {
    const auto [f, i, w, fb] = regime;
    const double b = i + w;
    const CostModel cost = Cost(regime);
    for (CommSemantics sem : kSemantics) {
      for (int pp : {2, 4, 6, 8}) {
        SCOPED_TRACE(absl::StrFormat("F=%g I=%g W=%g FB=%g PP=%d rendezvous=%d", f, i, w, fb, pp,
                                     sem == CommSemantics::kRendezvous));
        for (int n : {2 * pp, 3 * pp}) {
          const SimResult one = SimulateKind(Kind::k1F1B, pp, n, cost, sem);
          EXPECT_DOUBLE_EQ(one.bubble, (pp - 1) * (f + b)) << "1f1b n=" << n;
          const SimResult zb = SimulateKind(Kind::kZB1P, pp, n, cost, sem, 1);
          EXPECT_DOUBLE_EQ(zb.bubble, (pp - 1) * (f + b - 2 * w)) << "zb1p n=" << n;
          const SimResult dp = SimulateKind(Kind::kDualPipe, pp, n + n % 2, cost, sem);
          EXPECT_DOUBLE_EQ(dp.bubble, (pp / 2 - 1) * (fb + b - 3 * w)) << "dualpipe n=" << n;
          for (const RankStats& st : dp.ranks) EXPECT_EQ(st.peak_activations, pp + 1);
          for (const RankStats& st : dp.ranks) EXPECT_DOUBLE_EQ(st.params_fraction, 2.0 / pp);
          // DualPipeV on PP/2 ranks has PP stages.
          const SimResult dv = SimulateKind(Kind::kDualPipeV, pp / 2, n, cost, sem);
          EXPECT_DOUBLE_EQ(dv.bubble, (pp / 2 - 1) * (fb + b - 3 * w)) << "dualpipev n=" << n;
          for (const RankStats& st : dv.ranks) EXPECT_EQ(st.peak_activations, pp + 1);
        }
        const SimResult one = SimulateKind(Kind::k1F1B, pp, 2 * pp, cost, sem);
        for (const RankStats& st : one.ranks) EXPECT_DOUBLE_EQ(st.params_fraction, 1.0 / pp);
        EXPECT_EQ(one.ranks[0].peak_activations, pp);
      }
    }
  }
}

// Must-fail twin: a different W moves the bubble off the formula, so the
// check above depends on the schedule's real structure.
TEST(SimulatorTest, FormulaDependsOnTheCosts) {
  CostModel cost = Cost({1, 1, 1, 3});
  const SimResult base = SimulateKind(Kind::kDualPipe, 8, 20, cost, CommSemantics::kRendezvous);
  cost.fb = {2.5};
  const SimResult other = SimulateKind(Kind::kDualPipe, 8, 20, cost, CommSemantics::kRendezvous);
  EXPECT_DOUBLE_EQ(base.bubble, 3 * (3 + 2 - 3));
  EXPECT_NE(other.bubble, base.bubble);
}

TEST(SimulatorTest, OneFOneBMakespanClosedForm) {
  CostModel cost;
  cost.f = {1};
  cost.b = {2};
  const SimResult r = SimulateKind(Kind::k1F1B, 4, 8, cost, CommSemantics::kRendezvous);
  EXPECT_DOUBLE_EQ(r.makespan, (8 + 4 - 1) * 3.0);
  EXPECT_DOUBLE_EQ(r.bubble_ratio, 9.0 / 33.0);
  // The critical path starts at rank 0's first forward and ends at the last
  // backward of rank 0.
  ASSERT_FALSE(r.critical_path.empty());
  EXPECT_EQ(r.critical_path.front(), std::make_pair(0, 0));
  EXPECT_EQ(r.critical_path.back().first, 0);
}

TEST(SimulatorTest, TransferTimeDelaysReceivers) {
  CostModel cost;
  cost.p2p_latency = 0.5;
  const SimResult r = SimulateKind(Kind::kGPipe, 2, 1, cost, CommSemantics::kBuffered);
  // F0 [0,1], transfer 0.5, F1 [1.5,2.5], B1 [2.5,4.5], transfer, B0 [5,7].
  EXPECT_DOUBLE_EQ(r.makespan, 7.0);
  EXPECT_DOUBLE_EQ(r.timeline[1][1].start, 1.5);
}

// Stage 0 on rank 0, stage 1 on rank 1, one micro-batch; each rank waits on
// its send before posting the receive.
Schedule SendBeforeRecv() {
  absl::StatusOr<Schedule> s = MakeShell(Kind::kCustom, 2, 1, 1);
  EXPECT_OK(s);
  s->lowered = true;
  s->programs[0].actions = {Action::Compute(Op::kForward, 0, 0), Action::Comm(Op::kSendF, 0, 0, 0, 1, 0),
                            Action::Comm(Op::kRecvB, 0, 0, 0, 1, 1), Action::Compute(Op::kBackward, 0, 0)};
  s->programs[0].batches = {{2}, {3}};
  s->programs[1].actions = {Action::Comm(Op::kSendB, 1, 0, 0, 0, 0), Action::Comm(Op::kRecvF, 1, 0, 0, 0, 1),
                            Action::Compute(Op::kForward, 1, 0), Action::Compute(Op::kBackward, 1, 0)};
  s->programs[1].batches = {{1}, {2}};
  return *std::move(s);
}

// Two ranks that both send before receiving deadlock under rendezvous but
// not when sends are buffered.
TEST(SimulatorTest, SendBeforeRecvDeadlocksOnlyUnderRendezvous) {
  const Schedule s = SendBeforeRecv();
  EXPECT_THAT(Simulate(s, {CostModel(), CommSemantics::kRendezvous}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deadlock: rank 0 position 2")));
  EXPECT_OK(Simulate(s, {CostModel(), CommSemantics::kBuffered}));
}

// The untimed check agrees with the timed rendezvous run: the same error for
// the deadlock above, OK once rank 1 receives before it sends.
TEST(SimulatorTest, CheckRendezvousMatchesSimulate) {
  Schedule s = SendBeforeRecv();
  ASSERT_OK_AND_ASSIGN(const MessageIndex m, MatchMessages(s));
  const absl::Status timed = Simulate(s, {CostModel(), CommSemantics::kRendezvous}).status();
  ASSERT_FALSE(timed.ok());
  EXPECT_EQ(CheckRendezvous(s, m), timed);

  s.programs[1].actions = {Action::Comm(Op::kRecvF, 1, 0, 0, 0, 0), Action::Compute(Op::kForward, 1, 0),
                           Action::Compute(Op::kBackward, 1, 0), Action::Comm(Op::kSendB, 1, 0, 0, 0, 1)};
  s.programs[1].batches = {{1}, {4}};
  ASSERT_OK_AND_ASSIGN(const MessageIndex fixed, MatchMessages(s));
  EXPECT_OK(Simulate(s, {CostModel(), CommSemantics::kRendezvous}));
  EXPECT_OK(CheckRendezvous(s, fixed));
}

TEST(SimulatorTest, RejectsWrongPerStageCostLength) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 4, 8}));
  CostModel cost;
  cost.f = {1, 2, 3};
  EXPECT_THAT(Simulate(s, {cost}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 1 or 4")));
}

}  // namespace
}  // namespace tandem::schedule

namespace tandem::schedule {
namespace {

// Phase costs give each action the duration of its phases (an F&B the
// interleaved pair's), so the run equals one with those scalar costs; the
// exchanges are kept for the trace.
TEST(SimulatorTest, PhaseCostsGiveTheDurationsOfTheirPhases) {
  auto phases = std::make_shared<PhaseCosts>();
  phases->ep = 2;
  phases->ep_link = {10, 1};  // 30 kB: 40 us
  phases->f = {{PhaseStep::Compute(10), PhaseStep::Post(0, 30000, "dispatch"), PhaseStep::Yield(), PhaseStep::Wait(0),
                PhaseStep::Compute(10)}};
  phases->b = {{PhaseStep::Compute(20), PhaseStep::Post(0, 30000, "dispatch dy"), PhaseStep::Yield(),
                PhaseStep::Wait(0), PhaseStep::Compute(20)}};
  ASSERT_OK_AND_ASSIGN(Schedule s, Lower(*Generate({Kind::kDualPipe, 4, 8})));
  CostModel with;
  with.phases = phases;
  ASSERT_OK_AND_ASSIGN(SimResult r, Simulate(s, {with}));
  CostModel scalar;
  scalar.f = {60};    // 10 + 40 + 10 (phase_program_test)
  scalar.b = {80};    // 20 + 40 + 20
  scalar.fb = {110};  // interleaved
  scalar.i = {1};     // DualPipe's I and W have no programs: the scalars stay
  scalar.w = {1};
  with.i = scalar.i;
  with.w = scalar.w;
  ASSERT_OK_AND_ASSIGN(r, Simulate(s, {with}));
  ASSERT_OK_AND_ASSIGN(SimResult want, Simulate(s, {scalar}));
  EXPECT_DOUBLE_EQ(r.makespan, want.makespan);
  EXPECT_DOUBLE_EQ(r.bubble, want.bubble);
  int exchanges = 0;
  for (const auto& rank : r.exchanges) exchanges += static_cast<int>(rank.size());
  EXPECT_GT(exchanges, 0);
  // Must-fail twin: without the interleave the pair would take 140.
  scalar.fb = {140};
  ASSERT_OK_AND_ASSIGN(want, Simulate(s, {scalar}));
  EXPECT_NE(r.makespan, want.makespan);
}

}  // namespace
}  // namespace tandem::schedule
