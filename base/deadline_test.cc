#include "base/deadline.h"

#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(DeadlineTest, PastDeadlineIsExpiredWithNothingRemaining) {
  Deadline d = Deadline::In(absl::Milliseconds(-1));
  EXPECT_TRUE(d.expired());
  EXPECT_EQ(d.Remaining(), absl::ZeroDuration());
}

TEST(DeadlineTest, FutureDeadlineIsNotExpired) {
  Deadline d = Deadline::In(absl::Hours(1));
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.Remaining(), absl::Minutes(59));
  EXPECT_LE(d.Remaining(), absl::Hours(1));
}

TEST(DeadlineTest, NeverDoesNotExpire) {
  EXPECT_FALSE(Deadline::Never().expired());
  EXPECT_EQ(Deadline::Never().time(), absl::InfiniteFuture());
}

TEST(DeadlineTest, ExceededNamesWhatAndTimeout) {
  Deadline d = Deadline::In(absl::Seconds(30));
  EXPECT_THAT(d.Exceeded("recv seq 4 from rank 3"),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "recv seq 4 from rank 3: deadline 30s exceeded"));
}

}  // namespace
}  // namespace tandem
