#include "comm/overlap/phased_task.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A task of `posts` + 1 steps that logs "<name><step>" per step; optionally
// fails at step `fail_at`.
class Scripted : public PhasedTask {
 public:
  Scripted(std::string name, int posts, std::vector<std::string>* log, int fail_at = -1)
      : name_(std::move(name)), posts_(posts), log_(log), fail_at_(fail_at) {}
  absl::StatusOr<bool> Step() override {
    if (step_ == fail_at_) return absl::InternalError(absl::StrCat(name_, " failed"));
    log_->push_back(absl::StrCat(name_, step_));
    return step_++ == posts_;
  }

 private:
  std::string name_;
  int posts_;
  std::vector<std::string>* log_;
  int fail_at_;
  int step_ = 0;
};

TEST(PhasedTaskTest, InterleaveAlternatesAtPostsAndFinishesTheLonger) {
  std::vector<std::string> log;
  Scripted f("F", 3, &log), b("B", 1, &log);
  ASSERT_OK(Interleave(f, b));
  EXPECT_THAT(log, ElementsAre("F0", "B0", "F1", "B1", "F2", "F3"));
}

TEST(PhasedTaskTest, RunToEndStepsOneTaskAlone) {
  std::vector<std::string> log;
  Scripted f("F", 2, &log);
  ASSERT_OK(RunToEnd(f));
  EXPECT_THAT(log, ElementsAre("F0", "F1", "F2"));
}

TEST(PhasedTaskTest, TheFirstErrorStops) {
  std::vector<std::string> log;
  Scripted f("F", 3, &log), b("B", 3, &log, /*fail_at=*/1);
  EXPECT_THAT(Interleave(f, b), StatusIs(absl::StatusCode::kInternal, HasSubstr("B failed")));
  EXPECT_THAT(log, ElementsAre("F0", "B0", "F1"));
}

TEST(PhasedTaskTest, TraceRecordsStepsByChain) {
  std::vector<std::string> log;
  Scripted f("F", 1, &log), b("B", 0, &log);
  PhaseTrace trace;
  ASSERT_OK(Interleave(f, b, &trace));
  std::vector<std::string> chains;
  for (const PhaseEvent& e : trace.events()) {
    if (e.kind == PhaseEvent::Kind::kStepBegin) chains.push_back(absl::StrCat(e.chain));
  }
  EXPECT_THAT(chains, ElementsAre("0", "1", "0"));
}

// Summarize: compute is the steps' time minus the waits inside them.
TEST(PhasedTaskTest, SummarizeSubtractsWaits) {
  using K = PhaseEvent::Kind;
  const auto t0 = std::chrono::steady_clock::now();
  auto at = [&](int us) { return t0 + std::chrono::microseconds(us); };
  const std::vector<PhaseEvent> events = {
      {K::kStepBegin, 0, "", at(0)},   {K::kPost, 0, "a", at(5)},     {K::kStepEnd, 0, "", at(10)},
      {K::kStepBegin, 1, "", at(10)},  {K::kStepEnd, 1, "", at(40)},  {K::kStepBegin, 0, "", at(40)},
      {K::kWaitBegin, 0, "a", at(40)}, {K::kWaitEnd, 0, "a", at(45)}, {K::kStepEnd, 0, "", at(50)},
  };
  const PhaseTotals t = Summarize(events, at(0), at(100));
  EXPECT_DOUBLE_EQ(t.wall_us, 50);
  EXPECT_DOUBLE_EQ(t.wait_us, 5);
  EXPECT_DOUBLE_EQ(t.compute_us, 45);
  EXPECT_EQ(t.posts, 1);
  // Outside the window nothing counts.
  EXPECT_DOUBLE_EQ(Summarize(events, at(60), at(100)).compute_us, 0);
  // The exchange: posted at 5, in hand at 45.
  const std::vector<ExchangeSpan> spans = ExchangeSpans(events);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].what, "a");
  EXPECT_EQ(spans[0].posted, at(5));
  EXPECT_EQ(spans[0].done, at(45));
}

}  // namespace
}  // namespace tandem::comm
