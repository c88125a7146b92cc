#include "balance/load_recorder.h"

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "balance/eplb.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::balance {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

std::unique_ptr<LoadRecorder> MakeRecorder(int layers, int experts, int window, double alpha) {
  LoadRecorder::Options options;
  options.num_layers = layers;
  options.num_experts = experts;
  options.window_steps = window;
  options.ema_alpha = alpha;
  absl::StatusOr<std::unique_ptr<LoadRecorder>> r = LoadRecorder::Create(options);
  EXPECT_OK(r);
  return r.ok() ? *std::move(r) : nullptr;
}

TEST(LoadRecorderTest, WindowKeepsTheLastSteps) {
  auto r = MakeRecorder(1, 2, 2, 0.5);
  ASSERT_OK(r->Record(0, {1, 10}));
  r->EndStep();  // step 1: (1, 10)
  ASSERT_OK(r->Record(0, {2, 20}));
  ASSERT_OK(r->RecordRouted(0, {0, 1, 1}));
  r->EndStep();  // step 2: (3, 22)
  LoadRecorder::Snapshot s = r->TakeSnapshot();
  EXPECT_THAT(s.window, ElementsAre(4, 32));
  ASSERT_OK(r->Record(0, {5, 0}));
  EXPECT_THAT(r->TakeSnapshot().window, ElementsAre(4, 32));  // not ended
  r->EndStep();                                               // step 3: (5, 0); step 1 leaves the window
  s = r->TakeSnapshot();
  EXPECT_THAT(s.window, ElementsAre(8, 22));
  EXPECT_EQ(s.steps, 3);
  EXPECT_EQ(s.window_steps, 2);
  // EMA, alpha 0.5: (1, 10) -> (2, 16) -> (3.5, 8).
  EXPECT_THAT(s.ema, ElementsAre(FloatEq(3.5f), FloatEq(8.0f)));
}

// The window's steps, oldest first; replayed into a new recorder they give
// the same window, which then moves on the same way.
TEST(LoadRecorderTest, WindowStepsReplayIntoTheSameWindow) {
  auto r = MakeRecorder(1, 2, 2, 0.5);
  for (int64_t k : {1, 2, 3}) {
    ASSERT_OK(r->Record(0, {k, 10 * k}));
    r->EndStep();
  }
  const std::vector<std::vector<int64_t>> steps = r->WindowSteps();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_THAT(steps[0], ElementsAre(2, 20));
  EXPECT_THAT(steps[1], ElementsAre(3, 30));
  auto replayed = MakeRecorder(1, 2, 2, 0.5);
  for (const auto& step : steps) {
    ASSERT_OK(replayed->Record(0, step));
    replayed->EndStep();
  }
  EXPECT_EQ(replayed->TakeSnapshot().window, r->TakeSnapshot().window);
  for (LoadRecorder* x : {r.get(), replayed.get()}) {
    ASSERT_OK(x->Record(0, {7, 0}));
    x->EndStep();
  }
  EXPECT_THAT(replayed->TakeSnapshot().window, ElementsAre(10, 30));
  EXPECT_EQ(replayed->TakeSnapshot().window, r->TakeSnapshot().window);
  EXPECT_TRUE(MakeRecorder(1, 2, 2, 0.5)->WindowSteps().empty());
}

TEST(LoadRecorderTest, SnapshotFeedsTheSolver) {
  auto r = MakeRecorder(2, 4, 10, 0.1);
  for (int step = 0; step < 3; ++step) {
    ASSERT_OK(r->Record(0, {5, 1, 2, 7}));
    ASSERT_OK(r->Record(1, {0, 0, 9, 1}));
    r->EndStep();
  }
  const LoadRecorder::Snapshot s = r->TakeSnapshot();
  EXPECT_THAT(s.window, ElementsAre(15, 3, 6, 21, 0, 0, 27, 3));
  ASSERT_OK_AND_ASSIGN(Placement a, RebalanceExperts(s.window_weights(), 8, 2, 1, 4));
  ASSERT_OK_AND_ASSIGN(Placement b, RebalanceExperts(s.ema_weights(), 8, 2, 1, 4));
  EXPECT_OK(ValidatePlacement(a, 4));
  EXPECT_EQ(a.phy2log, b.phy2log);  // same loads up to a factor
}

TEST(LoadRecorderTest, RejectsBadInput) {
  LoadRecorder::Options options;
  options.num_layers = 2;
  options.num_experts = 0;
  EXPECT_THAT(LoadRecorder::Create(options), StatusIs(kInvalid, HasSubstr("num_experts: expected a positive "
                                                                          "count, got 0")));
  options.num_experts = 3;
  options.ema_alpha = 0;
  EXPECT_THAT(LoadRecorder::Create(options), StatusIs(kInvalid, HasSubstr("ema_alpha: expected a value in "
                                                                          "(0, 1], got 0")));
  options.ema_alpha = 0.5;
  options.window_steps = -1;
  EXPECT_THAT(LoadRecorder::Create(options), StatusIs(kInvalid, HasSubstr("window_steps")));
  auto r = MakeRecorder(2, 3, 4, 0.5);
  EXPECT_THAT(r->Record(2, {1, 2, 3}), StatusIs(kInvalid, HasSubstr("layer: expected a value in [0, 2), "
                                                                    "got 2")));
  EXPECT_THAT(r->Record(0, {1, 2}), StatusIs(kInvalid, HasSubstr("counts: expected 3 values")));
  EXPECT_THAT(r->Record(0, {1, -2, 3}), StatusIs(kInvalid, HasSubstr("counts[1]: expected a count")));
  EXPECT_THAT(r->RecordRouted(1, {0, 3}), StatusIs(kInvalid, HasSubstr("expert_ids[1]: expected an expert "
                                                                       "in [0, 3), got 3")));
  EXPECT_THAT(r->Record(0, {0, 0, int64_t{1} << 31}), StatusIs(kInvalid, HasSubstr("counts[2]")));
  r->EndStep();
  EXPECT_THAT(r->TakeSnapshot().window, ElementsAre(0, 0, 0, 0, 0, 0));
}

// Several threads record into every layer while another ends steps and a
// third takes snapshots: nothing is lost or counted twice.
TEST(LoadRecorderTest, ConcurrentRecordingCountsEverything) {
  constexpr int kLayers = 4, kExperts = 16, kThreads = 6, kRounds = 2000;
  auto r = MakeRecorder(kLayers, kExperts, 1 << 20, 0.01);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const int layer = (t + i) % kLayers;
        if (i % 2 == 0) {
          std::vector<int64_t> counts(kExperts, 0);
          counts[(t * 7 + i) % kExperts] = 3;
          ASSERT_OK(r->Record(layer, counts));
        } else {
          ASSERT_OK(r->RecordRouted(layer, {t % kExperts, (t + i) % kExperts}));
        }
      }
    });
  }
  std::thread stepper([&] {
    for (int i = 0; i < 200; ++i) r->EndStep();
  });
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) {
      const LoadRecorder::Snapshot s = r->TakeSnapshot();
      ASSERT_EQ(s.window.size(), static_cast<size_t>(kLayers * kExperts));
    }
  });
  for (auto& t : threads) t.join();
  stepper.join();
  reader.join();
  r->EndStep();  // whatever the stepper left in the current step
  int64_t total = 0;
  for (const int64_t x : r->TakeSnapshot().window) total += x;
  // Each thread: kRounds / 2 Record() calls of 3 tokens, as many routed
  // calls of 2 tokens.
  EXPECT_EQ(total, int64_t{kThreads} * (kRounds / 2) * (3 + 2));
}

}  // namespace
}  // namespace tandem::balance
