// -----------------------------------------------------------------------------
// File: lower.h
// -----------------------------------------------------------------------------
//
// Lowering: inserts the sends and receives a compute-only schedule needs
// between ranks. Two communication styles:
//   kBatched  DualPipe's: before each compute op, everything queued since the
//             last one (the previous op's sends, this op's receives) is posted
//             as one batch and waited on in full. For generated dualpipe and
//             dualpipev programs the batches are exactly the reference's
//             (whose few call sites queue some receives one op early).
//   kTorch    PyTorch's _add_send_recv: ranks are visited round-robin; an
//             action runs once its inputs are visible, its send follows it
//             and the sender places the matching receive on the peer. Each
//             send or receive is its own batch; a receive is waited on right
//             before the compute that needs it, sends at the end of the step.
// Stages adjacent on one rank (the V turnaround) exchange nothing.

#ifndef TANDEM_SCHEDULE_LOWERING_LOWER_H_
#define TANDEM_SCHEDULE_LOWERING_LOWER_H_

#include "absl/status/statusor.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

enum class CommStyle {
  kAuto,  // kBatched for two-direction schedules and dualpipe kinds
  kBatched,
  kTorch,
};

// Lower()
//
// The lowered form of compute-only `s` (kFailedPrecondition if already
// lowered). kTorch on a two-direction schedule is kInvalidArgument; a
// program whose actions can never become ready under kTorch's rules is
// kInvalidArgument "malformed compute schedule" naming each stuck rank.
absl::StatusOr<Schedule> Lower(const Schedule& s, CommStyle style = CommStyle::kAuto);

// SetTorchWaits()
//
// Sets every batch's wait_before in lowered `s` by kTorch's rule: a receive
// is waited on right before the first later compute on its rank that consumes
// it (end of program if none), a send at the end of the program.
void SetTorchWaits(Schedule* s);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_LOWERING_LOWER_H_
