// -----------------------------------------------------------------------------
// File: replan.h
// -----------------------------------------------------------------------------
//
// Re-planning a job for the ranks that remain (elastic training): the
// largest mesh that fits `ranks` under the same global batch, so training
// continues on the same data and objective (train/data.h).
//
// Candidates are every pp x dp <= ranks with an expert-parallel degree ep
// dividing dp and the expert slots (num_experts + extra_slots), a
// micro-batch count the kind accepts, and a per-rank share of each
// micro-batch that divides the global batch exactly. The kind is the job's
// if it fits pp, else the first that does of dualpipe -> dualpipev -> zbv ->
// zb1p -> 1f1b -> gpipe (DualPipe needs an even pipeline; the V-shaped
// kinds keep its two-copies-per-rank balance). Preference, in order: more
// ranks used (ranks left over stay idle), the job's kind, the job's
// pipeline degree (its partition and checkpoint reuse), the nearest
// pipeline degree, the largest ep up to the job's, the micro-batch count
// nearest the job's. kFailedPrecondition naming why when nothing fits.
#ifndef TANDEM_PLAN_REPLAN_H_
#define TANDEM_PLAN_REPLAN_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "schedule/ir/schedule.h"

namespace tandem::plan {

struct JobShape {
  schedule::Kind kind = schedule::Kind::kDualPipe;
  int pp = 1, dp = 1, ep = 1;
  int microbatches = 1;
  int tokens = 1;  // per micro-batch on each data-parallel rank
  int extra_slots = 0;

  int64_t global_batch() const { return int64_t{microbatches} * tokens * dp; }
  int ranks() const { return pp * dp; }
  // "--kind=K --pp=P --dp=D --ep=E --microbatches=M --tokens=T".
  std::string Flags() const;
};

// Replan()
//
// The mesh for `ranks` remaining ranks of `job` on a model of `units` units
// and `experts` routed experts.
absl::StatusOr<JobShape> Replan(const JobShape& job, int ranks, int units, int experts);

}  // namespace tandem::plan

#endif  // TANDEM_PLAN_REPLAN_H_
