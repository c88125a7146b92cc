// -----------------------------------------------------------------------------
// File: partition.h
// -----------------------------------------------------------------------------
//
// Stage partitioning: which contiguous units of the model (model.h: input
// projection, blocks, head) each pipeline stage holds, from per-unit costs
// (model structure, UnitFlops(), or measured, model::MeasureUnitCosts()),
// relative pipeline-rank speeds (unequal devices) and a per-rank memory cap
// (memory.h). The objective is the largest rank time: over the stage copies
// the schedule places on a rank, cost x micro-batches / speed.
//
// Optimality, by the schedule's placement:
//   - one stage per rank (gpipe, 1f1b, zb1p): exact (dynamic programming
//     over stages and cut points, O(stages x units^2));
//   - two stages per rank nested as a V (zbv, dualpipev: rank r holds r and
//     2R-1-r) or as DualPipe's pairs (ranks r and R-1-r both hold stages r
//     and R-1-r): exact (dynamic programming over the nested ranges,
//     O(levels x units^4), at most 128 units);
//   - any other placement (interleaved, looped: v stages per rank): the
//     exact optimum of the largest *stage* time, whose rank time is at most
//     v times the optimum (each rank sums v stages, each no longer than the
//     optimal rank time); StagePlan::bound says v. The memory cap is then
//     shared evenly between a rank's copies (conservative).
// Among optimal partitions the one with the smallest sum of squared rank
// times (per stage on other placements) is returned: the ranks that do not
// set the objective are balanced too, rather than the first stage left with
// the input unit alone. Remaining ties go to the smallest cuts, decided from
// the first stage (chains) or the outermost level (nested) in; the same
// inputs give the same bounds.
#ifndef TANDEM_PLAN_PARTITION_H_
#define TANDEM_PLAN_PARTITION_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "plan/memory.h"
#include "schedule/ir/schedule.h"

namespace tandem::plan {

struct PartitionRequest {
  std::vector<double> unit_costs;  // per unit, one micro-batch forward + backward (>= 0)
  std::vector<double> rank_speed;  // per pipeline rank (> 0); empty: all 1
  // Memory (memory.h); empty: not checked. Activations of `tokens` tokens
  // per micro-batch.
  std::vector<UnitMemory> unit_memory;
  int tokens = 0;
  double memory_cap_bytes = 0;  // per rank; 0: no cap
};

struct StagePlan {
  std::vector<int> bounds;          // stages + 1 unit indices
  std::vector<double> rank_time;    // per pipeline rank
  std::vector<double> rank_memory;  // per pipeline rank (0 without unit_memory)
  double max_rank_time = 0;         // the objective
  bool exact = true;
  double bound = 1;  // max_rank_time <= bound x the optimum
};

// UnitFlops()
//
// Per unit of `c`, the floating-point operations of one token's forward and
// backward (3 x the forward's multiply-adds x 2; routed experts counted
// top_k times): costs from the model structure alone, deterministic.
std::vector<double> UnitFlops(const model::ModelConfig& c);

// PartitionStages()
//
// kInvalidArgument naming the bad value: a cost that is negative or not
// finite, fewer units than stages, speeds of another count than s.ranks or
// not finite and > 0, unit_memory of another count than unit_costs;
// kResourceExhausted when no partition fits the memory cap, naming the
// least that the fullest rank of any partition needs.
absl::StatusOr<StagePlan> PartitionStages(const schedule::Schedule& s, const PartitionRequest& request);

// Evaluate()
//
// The plan of given bounds (errors of CheckBounds()); exact = true.
absl::StatusOr<StagePlan> Evaluate(const schedule::Schedule& s, const PartitionRequest& request,
                                   const std::vector<int>& bounds);

}  // namespace tandem::plan

#endif  // TANDEM_PLAN_PARTITION_H_
