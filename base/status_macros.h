// -----------------------------------------------------------------------------
// File: status_macros.h
// -----------------------------------------------------------------------------
//
// Early-return helpers for absl::Status and absl::StatusOr, which Debian's
// Abseil 20220623 lacks (newer Abseil has ABSL_RETURN_IF_ERROR).
//
// Example:
//   absl::StatusOr<Plan> MakePlan(const Input& in) {
//     TANDEM_RETURN_IF_ERROR(Validate(in));
//     TANDEM_ASSIGN_OR_RETURN(Placement p, Solve(in));
//     return Plan{std::move(p)};
//   }

#ifndef TANDEM_BASE_STATUS_MACROS_H_
#define TANDEM_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// TANDEM_RETURN_IF_ERROR()
//
// Evaluates `expr` (an absl::Status or absl::StatusOr) once and returns its
// status from the enclosing function if it is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)                                                 \
  do {                                                                               \
    const absl::Status tandem_status_ = ::tandem::status_internal::AsStatus((expr)); \
    if (!tandem_status_.ok()) return tandem_status_;                                 \
  } while (false)

// TANDEM_ASSIGN_OR_RETURN()
//
// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`, which may be a
// declaration (`auto x`, `const Foo& y` is not allowed) or an existing lvalue.
#define TANDEM_ASSIGN_OR_RETURN(lhs, rexpr) \
  TANDEM_ASSIGN_OR_RETURN_IMPL_(TANDEM_STATUS_MACROS_CONCAT_(tandem_statusor_, __LINE__), lhs, rexpr)

#define TANDEM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#define TANDEM_STATUS_MACROS_CONCAT_(a, b) TANDEM_STATUS_MACROS_CONCAT2_(a, b)
#define TANDEM_STATUS_MACROS_CONCAT2_(a, b) a##b

namespace tandem::status_internal {

inline const absl::Status& AsStatus(const absl::Status& s) { return s; }

template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace tandem::status_internal

#endif  // TANDEM_BASE_STATUS_MACROS_H_
