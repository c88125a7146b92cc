#include "schedule/simulator/render.h"

#include <limits>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strict_json.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

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
}

// The Chrome/Perfetto trace is JSON: per rank a named process with a compute
// and a comm track, and one event per action with its id, track and the
// simulated times in microseconds.
TEST(RenderTest, ChromeTraceHasOneEventPerAction) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Lower(*Generate({Kind::k1F1B, 2, 3})));
  ASSERT_OK_AND_ASSIGN(SimResult r, Simulate(s, {CostModel()}));
  ASSERT_OK_AND_ASSIGN(std::string text, RenderChromeTrace(s, r, /*unit_us=*/250.0));
  ASSERT_OK_AND_ASSIGN(json::Json trace, json::Parse(text));
  std::set<std::string> processes, seen;
  for (const json::Json& e : trace.at("traceEvents")) {
    if (e.at("ph") == "M") {
      if (e.at("name") == "process_name") processes.insert(e.at("args").at("name").get<std::string>());
      continue;
    }
    ASSERT_EQ(e.at("ph"), "X");
    const int rank = e.at("pid").get<int>();
    const std::string id = e.at("args").at("id").get<std::string>();
    const int i = std::stoi(id.substr(id.find('.') + 1));
    ASSERT_EQ(id, absl::StrCat("r", rank, ".", i));
    EXPECT_TRUE(seen.insert(id).second) << id;
    const Action& a = s.programs[rank].actions[i];
    EXPECT_EQ(e.at("name"), DescribeAction(s, a));
    EXPECT_EQ(e.at("tid"), IsComm(a.op) ? 1 : 0);
    EXPECT_EQ(e.at("ts").get<double>(), r.timeline[rank][i].start * 250.0);
    EXPECT_EQ(e.at("dur").get<double>(), (r.timeline[rank][i].end - r.timeline[rank][i].start) * 250.0);
  }
  EXPECT_EQ(processes, (std::set<std::string>{"rank 0", "rank 1"}));
  EXPECT_EQ(seen.size(), s.programs[0].actions.size() + s.programs[1].actions.size());
  // A time that is not finite cannot be written.
  r.timeline[0][0].end = std::numeric_limits<double>::infinity();
  EXPECT_THAT(RenderChromeTrace(s, r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dur")));
}

}  // namespace
}  // namespace tandem::schedule
