#include "model/weight_grad_store.h"

#include <vector>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Units are popped oldest first; a unit runs all its closures in order.
TEST(WeightGradStoreTest, FifoUnits) {
  WeightGradStore store;
  std::vector<int> log;
  store.Put([&] { log.push_back(1); });
  store.Put([&] { log.push_back(2); });
  store.Flush();
  store.Put([&] { log.push_back(3); });
  store.Flush();
  store.Flush();  // an empty unit still counts
  EXPECT_EQ(store.size(), 3u);
  EXPECT_TRUE(log.empty());
  EXPECT_OK(store.Pop());
  EXPECT_THAT(log, ElementsAre(1, 2));
  EXPECT_OK(store.Pop());
  EXPECT_THAT(log, ElementsAre(1, 2, 3));
  EXPECT_OK(store.Pop());
  EXPECT_THAT(store.Pop(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no queued unit")));
}

// Must-fail twin of FifoUnits: popping newest first would give 3 before 1.
TEST(WeightGradStoreTest, OrderIsNotLifo) {
  WeightGradStore store;
  std::vector<int> log;
  store.Put([&] { log.push_back(1); });
  store.Flush();
  store.Put([&] { log.push_back(3); });
  store.Flush();
  EXPECT_OK(store.Pop());
  EXPECT_NE(log, std::vector<int>{3});
}

TEST(WeightGradStoreTest, ClearAndDropPending) {
  WeightGradStore store;
  int runs = 0;
  store.Put([&] { ++runs; });
  store.Flush();
  store.Put([&] { ++runs; });
  EXPECT_EQ(store.pending(), 1u);
  store.DropPending();
  EXPECT_EQ(store.pending(), 0u);
  EXPECT_EQ(store.size(), 1u);
  store.Clear();
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(runs, 0);
  DeferOrRun(nullptr, [&] { ++runs; });
  EXPECT_EQ(runs, 1);
}

// DeferredWork: without a store the work runs now and its status comes
// back; deferred, the first failure is kept and pending() counts what the
// store still holds, run or dropped.
TEST(DeferredWorkTest, RunsNowOrCountsWhatIsDeferred) {
  DeferredWork work;
  int runs = 0;
  EXPECT_OK(work.Run(nullptr, [&] {
    ++runs;
    return absl::OkStatus();
  }));
  EXPECT_THAT(work.Run(nullptr, [] { return absl::InternalError("now"); }),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("now")));
  EXPECT_EQ(runs, 1);
  EXPECT_OK(work.CheckIdle("layer"));  // a failure that was returned is not kept

  WeightGradStore store;
  EXPECT_OK(work.Run(&store, [&] {
    ++runs;
    return absl::OkStatus();
  }));
  EXPECT_OK(work.Run(&store, [] { return absl::InternalError("first"); }));
  EXPECT_OK(work.Run(&store, [] { return absl::InternalError("second"); }));
  EXPECT_EQ(work.pending(), 3);
  EXPECT_THAT(work.CheckIdle("layer"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                HasSubstr("layer: 3 deferred weight-gradient closures not run yet")));
  EXPECT_OK(work.error());
  store.Flush();
  ASSERT_OK(store.Pop());
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(work.pending(), 0);
  EXPECT_THAT(work.error(), StatusIs(absl::StatusCode::kInternal, HasSubstr("first")));
  EXPECT_THAT(work.CheckIdle("layer"), StatusIs(absl::StatusCode::kInternal, HasSubstr("first")));

  DeferredWork dropped;
  EXPECT_OK(dropped.Run(&store, [] { return absl::OkStatus(); }));
  EXPECT_OK(dropped.Run(&store, [] { return absl::OkStatus(); }));
  store.Flush();
  EXPECT_OK(dropped.Run(&store, [] { return absl::OkStatus(); }));
  EXPECT_EQ(dropped.pending(), 3);
  store.DropPending();
  EXPECT_EQ(dropped.pending(), 2);
  store.Clear();
  EXPECT_EQ(dropped.pending(), 0);
  EXPECT_OK(dropped.CheckIdle("layer"));
}

}  // namespace
}  // namespace tandem::model
