// -----------------------------------------------------------------------------
// File: status_matchers.h
// -----------------------------------------------------------------------------
//
// GoogleMock matchers for absl::Status and absl::StatusOr (Debian's Abseil
// 20220623 has none). Tests match the code and a substring of the message,
// never just "not OK".
//
// Example:
//   EXPECT_THAT(Parse(""), StatusIs(absl::StatusCode::kInvalidArgument,
//                                   HasSubstr("line 1")));
//   EXPECT_THAT(Solve(in), IsOkAndHolds(Field(&Plan::moves, 0)));

#ifndef TANDEM_BASE_TESTING_STATUS_MATCHERS_H_
#define TANDEM_BASE_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace tandem::testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace internal

// StatusIs()
//
// Matches an absl::Status or absl::StatusOr whose code is `code` and whose
// message matches `message` (a string or a matcher such as HasSubstr).
MATCHER_P2(StatusIs, code, message,
           absl::StrCat("has status code ", absl::StatusCodeToString(code), " and a message that ",
                        ::testing::DescribeMatcher<std::string>(::testing::MatcherCast<std::string>(message),
                                                                negation))) {
  const absl::Status& s = internal::GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code && ::testing::ExplainMatchResult(::testing::MatcherCast<std::string>(message),
                                                           std::string(s.message()), result_listener);
}

// IsOk()
//
// Matches an OK absl::Status or absl::StatusOr.
MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const absl::Status& s = internal::GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.ok();
}

// IsOkAndHolds()
//
// Matches an OK absl::StatusOr whose value matches `inner`.
MATCHER_P(IsOkAndHolds, inner, "is OK and holds a value that matches") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, *arg, result_listener);
}

}  // namespace tandem::testing

// ASSERT_OK_AND_ASSIGN()
//
// Asserts that `rexpr` (an absl::StatusOr) is OK and moves its value into
// `lhs`, a declaration or an lvalue. For tests only.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(TANDEM_TESTING_CONCAT_(tandem_statusor_, __LINE__), lhs, rexpr)

#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr)             \
  auto statusor = (rexpr);                                           \
  ASSERT_TRUE(statusor.ok()) << #rexpr << ": " << statusor.status(); \
  lhs = std::move(statusor).value()

#define TANDEM_TESTING_CONCAT_(a, b) TANDEM_TESTING_CONCAT2_(a, b)
#define TANDEM_TESTING_CONCAT2_(a, b) a##b

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::tandem::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::tandem::testing::IsOk())

#endif  // TANDEM_BASE_TESTING_STATUS_MATCHERS_H_
