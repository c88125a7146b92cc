#include "base/testing/status_matchers.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace tandem::testing {
namespace {

using ::testing::HasSubstr;

TEST(StatusMatchersTest, StatusIsMatchesCodeAndMessage) {
  EXPECT_THAT(absl::InvalidArgumentError("rank 3: bad"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank 3")));
  absl::StatusOr<int> v = absl::NotFoundError("key");
  EXPECT_THAT(v, StatusIs(absl::StatusCode::kNotFound, "key"));
}

// Must-fail twins: a wrong code or a wrong message makes the expectation fail.
TEST(StatusMatchersTest, StatusIsRejectsWrongCode) {
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(absl::InternalError("x"), StatusIs(absl::StatusCode::kInvalidArgument, "x")),
                          "INVALID_ARGUMENT");
}

TEST(StatusMatchersTest, StatusIsRejectsWrongMessage) {
  EXPECT_NONFATAL_FAILURE(
      EXPECT_THAT(absl::InternalError("rank 2"), StatusIs(absl::StatusCode::kInternal, HasSubstr("rank 3"))), "rank 3");
}

TEST(StatusMatchersTest, IsOkAndHoldsChecksStatusAndValue) {
  absl::StatusOr<int> ok = 7;
  EXPECT_THAT(ok, IsOkAndHolds(7));
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(ok, IsOkAndHolds(8)), "");
  absl::StatusOr<int> bad = absl::InternalError("boom");
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(bad, IsOkAndHolds(7)), "boom");
}

TEST(StatusMatchersTest, IsOkRejectsErrors) {
  EXPECT_OK(absl::OkStatus());
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(absl::InternalError("boom")), "boom");
}

}  // namespace
}  // namespace tandem::testing
