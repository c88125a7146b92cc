// -----------------------------------------------------------------------------
// File: validator.h
// -----------------------------------------------------------------------------
//
// Checks that a schedule computes every gradient exactly once and can run to
// completion: header and placement, every action on the rank that holds its
// stage, per-stage counts (M forwards, M backwards as B or I, one W per I),
// dependency order (F before B/I, I before W, both parts of FB), and, for a
// lowered program, that sends and receives go to the right peers, that the
// k-th send on every directed rank pair matches the k-th receive, that data
// is received before it is used, and that the program cannot deadlock when
// batches complete only at rendezvous. A compute-only program must have an
// order in which cross-rank inputs are produced before they are consumed.
//
// Example:
//   absl::Status s = Validate(schedule);

#ifndef TANDEM_SCHEDULE_VALIDATOR_VALIDATOR_H_
#define TANDEM_SCHEDULE_VALIDATOR_VALIDATOR_H_

#include "absl/status/status.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// Validate()
//
// OK if `s` is well formed and deadlock-free; otherwise kInvalidArgument
// naming the first offending action as "rank R position P (ACTION): what:
// expected X, got Y", followed by the actions around it.
absl::Status Validate(const Schedule& s);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_VALIDATOR_VALIDATOR_H_
