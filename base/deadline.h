// -----------------------------------------------------------------------------
// File: deadline.h
// -----------------------------------------------------------------------------
//
// A point in time by which something must finish. Everything in tandem that
// waits (communication, stores, the executor) takes a Deadline, and a wait
// that runs past it returns kDeadlineExceeded naming what it waited for.
//
// Example:
//   Deadline d = Deadline::In(absl::Seconds(30));
//   if (!cv.WaitWithDeadline(&mu, d.time())) return d.Exceeded("recv from 3");

#ifndef TANDEM_BASE_DEADLINE_H_
#define TANDEM_BASE_DEADLINE_H_

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tandem {

class Deadline {
 public:
  // Deadline::In()
  //
  // The deadline `timeout` from now; a negative timeout is already expired.
  static Deadline In(absl::Duration timeout) { return Deadline(absl::Now() + timeout, timeout); }

  // Deadline::Never()
  //
  // A deadline that never expires (for code that is known not to block).
  static Deadline Never() { return Deadline(absl::InfiniteFuture(), absl::InfiniteDuration()); }

  absl::Time time() const { return time_; }
  absl::Duration timeout() const { return timeout_; }
  bool expired() const { return absl::Now() >= time_; }

  // Remaining()
  //
  // Time left until the deadline, never negative.
  absl::Duration Remaining() const { return std::max(time_ - absl::Now(), absl::ZeroDuration()); }

  // Slice()
  //
  // A slice of this wait, for waiting in steps (to check something between
  // them): it expires after at most `at_most`, no later than this deadline,
  // but its timeout() is this deadline's, so a timeout message names the
  // whole wait, not its last slice.
  Deadline Slice(absl::Duration at_most) const { return Deadline(std::min(absl::Now() + at_most, time_), timeout_); }

  // Exceeded()
  //
  // The error to return when a wait for `what` ran past this deadline:
  // kDeadlineExceeded with "<what>: deadline <timeout> exceeded".
  absl::Status Exceeded(absl::string_view what) const;

 private:
  Deadline(absl::Time time, absl::Duration timeout) : time_(time), timeout_(timeout) {}

  absl::Time time_;
  absl::Duration timeout_;
};

}  // namespace tandem

#endif  // TANDEM_BASE_DEADLINE_H_
