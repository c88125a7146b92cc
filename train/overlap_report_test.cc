#include "train/overlap_report.h"

#include "gtest/gtest.h"

namespace tandem::train {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = comm::PhaseEvent::Kind;

// A hand-made pair: F computes 0-10 and posts "a" at 5, B computes 10-30
// (its exchange "b" posted at 20), F resumes at 30, waits for "a" 30-32
// and computes to 40, B resumes at 40, waits for "b" 40-50 and computes to
// 60. The network modeled "a" at 20 us and "b" at 25 us alone ("b" ended
// 5 us later, queued behind "a").
TEST(OverlapReportTest, FiguresOfAPair) {
  const Clock::time_point t0 = Clock::now();
  auto at = [&](int us) { return t0 + std::chrono::microseconds(us); };
  const std::vector<comm::PhaseEvent> events = {
      {Kind::kStepBegin, 0, "", at(0)},  {Kind::kPost, 0, "a", at(5)},       {Kind::kStepEnd, 0, "", at(10)},
      {Kind::kStepBegin, 1, "", at(10)}, {Kind::kPost, 1, "b", at(20)},      {Kind::kStepEnd, 1, "", at(30)},
      {Kind::kStepBegin, 0, "", at(30)}, {Kind::kWaitBegin, 0, "a", at(30)}, {Kind::kWaitEnd, 0, "a", at(32)},
      {Kind::kStepEnd, 0, "", at(40)},   {Kind::kStepBegin, 1, "", at(40)},  {Kind::kWaitBegin, 1, "b", at(40)},
      {Kind::kWaitEnd, 1, "b", at(50)},  {Kind::kStepEnd, 1, "", at(60)},
  };
  comm::ModeledOp a, b, reduce;
  a.name = b.name = "all_to_all_v 10 B";
  a.posted = at(4);
  a.ready = at(5);
  a.end = at(25);
  a.alone_us = 20;
  b.posted = at(19);
  b.ready = at(20);
  b.end = at(50);
  b.alone_us = 25;
  reduce.name = "all_reduce 4 B";  // not an exchange
  reduce.posted = at(6);
  reduce.ready = reduce.end = at(6);
  const PairOverlap p = PairFigures(events, at(0), at(60), {b, reduce, a}, /*interleaved=*/true);
  EXPECT_NEAR(p.fb_ms, 0.060, 1e-9);
  EXPECT_NEAR(p.compute_ms, 0.048, 1e-9);  // 60 - 2 - 10 of waits
  EXPECT_NEAR(p.comm_ms, 0.045, 1e-9);     // 20 + 25
  ASSERT_TRUE(p.hidden_fraction.has_value());
  EXPECT_NEAR(*p.hidden_fraction, 1 - (60.0 - 48.0) / 45.0, 1e-9);
  // The replay on one clock: F computes 5, posts a (5..25) and computes 5
  // (10); B computes 10 (20), posts b, which waits for the egress (25..50),
  // and computes 10 (30); F waits for a (done) and computes 8 (38); B waits
  // for b (50) and computes 10: 60.
  EXPECT_NEAR(p.predicted_fb_ms, 0.060, 1e-9);
  // One after the other: F 5 + wait to 25 + 8 = 33, B 10 + wait to 35 + 10
  // = 45.
  EXPECT_NEAR(PairFigures(events, at(0), at(60), {b, reduce, a}, false).predicted_fb_ms, 0.078, 1e-9);
  // The programs themselves: steps end in yields.
  using Step = schedule::PhaseStep::Kind;
  const schedule::PhaseProgram f = PhasesOf(events, 0, at(0), at(60), {a, b});
  std::vector<Step> kinds;
  for (const schedule::PhaseStep& s : f) kinds.push_back(s.kind);
  EXPECT_EQ(kinds, (std::vector<Step>{Step::kCompute, Step::kPost, Step::kCompute, Step::kYield, Step::kWait,
                                      Step::kCompute, Step::kYield}));
  EXPECT_NEAR(f[1].us, 20, 1e-9);
  EXPECT_NEAR(f[5].us, 8, 1e-9);
  // No exchange in the window: no hidden fraction.
  EXPECT_FALSE(PairFigures(events, at(0), at(60), {}, true).hidden_fraction.has_value());
}

}  // namespace
}  // namespace tandem::train
