#include "schedule/simulator/render.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

// The unit-time picture of DualPipe PP=4, N=8 from the DualPipe notes
// (F=I=W=1, B=2, F&B=3): makespan 26 = 24 work + 2 bubble.
TEST(RenderTest, AsciiMatchesTheUnitTimeDualPipePicture) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipe, 4, 8}));
  ASSERT_OK_AND_ASSIGN(Schedule lowered, Lower(s));
  CostModel cost;
  cost.fb = {3};
  ASSERT_OK_AND_ASSIGN(SimResult r, Simulate(lowered, {cost}));
  EXPECT_DOUBLE_EQ(r.makespan, 26);
  const std::vector<std::string> rows = absl::StrSplit(RenderAscii(lowered, r), '\n', absl::SkipEmpty());
  ASSERT_EQ(rows.size(), 4);
  // Rank 0 of the notes' picture.
  EXPECT_EQ(rows[0], "r0 F0 F0 F0 F1 I1 .. W1 F1 F0 B1 B1 F1 B0 B0 B1 B1 .. F1 B0 B0 B1 B1 I0 W0 I0 W0");
  EXPECT_EQ(rows[3], "r3 F1 F1 F1 F0 I0 .. W0 F0 F1 B0 B0 F0 B1 B1 B0 B0 .. F0 B1 B1 B0 B0 I1 W1 I1 W1");
}

TEST(RenderTest, SvgAndChromeTraceNameEveryAction) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Lower(*Generate({Kind::k1F1B, 2, 3})));
  ASSERT_OK_AND_ASSIGN(SimResult r, Simulate(s, {CostModel()}));
  const std::string svg = RenderSvg(s, r);
  EXPECT_TRUE(absl::StartsWith(svg, "<svg"));
  EXPECT_TRUE(absl::StrContains(svg, "<title>B s1 mb2 ["));
  const std::string trace = RenderChromeTrace(s, r);
  EXPECT_TRUE(absl::StrContains(trace, "\"id\":\"r1.0\""));
  EXPECT_TRUE(absl::StrContains(trace, "\"name\":\"rank 1\""));
}

}  // namespace
}  // namespace tandem::schedule
