// -----------------------------------------------------------------------------
// File: dualpipe.h
// -----------------------------------------------------------------------------
//
// DeepSeek's DualPipe and DualPipeV step loops (8 steps), traced per rank.
// With `with_comm` the program also holds the reference's communication:
// every send and receive queued since the last compute op is posted as one
// batch right before the next compute op (or W) and waited on in full, in
// the exact order of the reference's call sites. Preconditions are checked by
// Generate(); this is its back end and the lowering pass's.

#ifndef TANDEM_SCHEDULE_GENERATORS_DUALPIPE_H_
#define TANDEM_SCHEDULE_GENERATORS_DUALPIPE_H_

#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// Whether (ranks, microbatches) satisfy the reference's preconditions for
// `kind` (kDualPipe or kDualPipeV); Generate() reports which rule failed.
bool DualPipeParametersValid(Kind kind, int ranks, int microbatches);

// A complete schedule (placement and programs) for kDualPipe (`ranks` even,
// microbatches even and >= 2 * ranks) or kDualPipeV (microbatches >=
// 2 * ranks). Lowered (with reference batches) iff `with_comm`.
Schedule TraceDualPipe(Kind kind, int ranks, int microbatches, bool with_comm);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_GENERATORS_DUALPIPE_H_
