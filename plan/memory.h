// -----------------------------------------------------------------------------
// File: memory.h
// -----------------------------------------------------------------------------
//
// The one memory estimator of a training rank, from the model config and
// the schedule (used by the partitioner, the trainer's and the CLIs'
// up-front checks). A pipeline rank holds, per stage copy the schedule
// places on it:
//   - state: f32 parameter, gradient and both AdamW moments (16 bytes per
//     parameter) of the stage's units, experts sharded over the `ep` ranks
//     of an expert-parallel group (num_experts + extra_slots slots per MoE
//     layer);
//   - activations: at its peak, as many micro-batches as the rank's program
//     has run forward on the copy and not yet finished backward (B, or W
//     after a split I/W), counted from the program, so each kind's depth is
//     exact; each micro-batch `tokens` tokens through the stage's units at a
//     per-token upper bound (inputs, norms, router outputs, top_k + shared
//     expert rows with their inner activations).
// Peaks of different copies are added (an upper bound of the joint peak).
#ifndef TANDEM_PLAN_MEMORY_H_
#define TANDEM_PLAN_MEMORY_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "schedule/ir/schedule.h"

namespace tandem::plan {

struct UnitMemory {
  double state_bytes = 0;                 // parameters, gradients, AdamW moments
  double activation_bytes_per_token = 0;  // per micro-batch token held
};

// UnitMemories()
//
// Per unit of `c` (model::NumUnits). kInvalidArgument when ep < 1 or
// extra_slots < 0.
absl::StatusOr<std::vector<UnitMemory>> UnitMemories(const model::ModelConfig& c, int ep, int extra_slots);

// PeakInFlight()
//
// [direction * stages + stage]: the most micro-batches a stage copy holds
// activations for at once on its rank (0 for copies the schedule lacks).
std::vector<int> PeakInFlight(const schedule::Schedule& s);

// CopyBytes()
//
// Bytes of one stage copy over units [begin, end) holding `in_flight`
// micro-batches of `tokens` tokens.
double CopyBytes(const std::vector<UnitMemory>& units, int begin, int end, int in_flight, int tokens);

// RankMemoryBytes()
//
// Per pipeline rank of `s`, with stage s over units [bounds[s],
// bounds[s + 1]). kInvalidArgument when bounds does not split
// units.size() units into s.stages non-empty stages.
absl::StatusOr<std::vector<double>> RankMemoryBytes(const schedule::Schedule& s, const std::vector<UnitMemory>& units,
                                                    const std::vector<int>& bounds, int tokens);

// CheckBounds()
//
// kInvalidArgument naming the problem when `bounds` is not stages + 1
// increasing unit indices from 0 to `units`.
absl::Status CheckBounds(const std::vector<int>& bounds, int stages, int units);

}  // namespace tandem::plan

#endif  // TANDEM_PLAN_MEMORY_H_
