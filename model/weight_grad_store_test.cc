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
  EXPECT_THAT(store.Pop(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("no queued unit")));
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

}  // namespace
}  // namespace tandem::model
