#include "base/status_macros.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::tandem::testing::IsOkAndHolds;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd input");
  return x / 2;
}

int calls = 0;
absl::Status Counted(absl::Status s) {
  ++calls;
  return s;
}

absl::Status Check(absl::Status s) {
  TANDEM_RETURN_IF_ERROR(Counted(s));
  return absl::InternalError("reached the end");
}

absl::StatusOr<int> Quarter(int x) {
  TANDEM_ASSIGN_OR_RETURN(int half, Half(x));
  TANDEM_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheErrorAndEvaluatesOnce) {
  calls = 0;
  EXPECT_THAT(Check(absl::NotFoundError("gone")), StatusIs(absl::StatusCode::kNotFound, "gone"));
  EXPECT_EQ(calls, 1);
}

TEST(StatusMacrosTest, ReturnIfErrorFallsThroughOnOk) {
  EXPECT_THAT(Check(absl::OkStatus()), StatusIs(absl::StatusCode::kInternal, "reached the end"));
}

TEST(StatusMacrosTest, ReturnIfErrorAcceptsStatusOr) {
  auto f = []() -> absl::Status {
    TANDEM_RETURN_IF_ERROR(Half(3));
    return absl::OkStatus();
  };
  EXPECT_THAT(f(), StatusIs(absl::StatusCode::kInvalidArgument, "odd input"));
}

TEST(StatusMacrosTest, AssignOrReturnChainsValues) {
  EXPECT_THAT(Quarter(12), IsOkAndHolds(3));
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
}

}  // namespace
}  // namespace tandem
