// -----------------------------------------------------------------------------
// File: simulator.h
// -----------------------------------------------------------------------------
//
// A discrete-event model of a lowered schedule, on the validator's rendezvous
// engine (validator/rendezvous.h). Each rank runs its program in order:
// compute takes the cost model's time; a batch of sends and receives is
// posted (instantly) where its first operation stands and the rank waits for
// it before the action at its wait_before. Communication is not busy time.
// With phase costs (CostModel::phases) each compute action's time comes
// from its phases, and its expert-parallel exchanges are kept for traces.
// Two semantics:
//   kBuffered    a send completes when posted; a receive completes when it
//                and the matching send are posted, plus the transfer time.
//   kRendezvous  both sides complete when both are posted, plus the transfer
//                time; a batch completes with its last operation (NCCL groups).
// The k-th send on a directed rank pair matches the k-th receive there.
//
// Example:
//   absl::StatusOr<SimResult> r = Simulate(lowered, {.cost = cost});
//   double bubble = r->bubble;

#ifndef TANDEM_SCHEDULE_SIMULATOR_SIMULATOR_H_
#define TANDEM_SCHEDULE_SIMULATOR_SIMULATOR_H_

#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "schedule/ir/matching.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/cost_model.h"

namespace tandem::schedule {

enum class CommSemantics { kBuffered, kRendezvous };

struct SimOptions {
  CostModel cost;
  CommSemantics semantics = CommSemantics::kRendezvous;
  bool timeline = true;  // fill SimResult::timeline and critical_path
};

struct RankStats {
  double busy = 0;           // compute time
  double idle = 0;           // makespan - busy
  double finish = 0;         // when its last action and wait completed
  int peak_activations = 0;  // stage-activations held at once
  double peak_activation_bytes = 0;
  double params_fraction = 0;  // stage copies held / stages
};

struct Interval {
  double start = 0;  // compute: start; comm: when posted
  double end = 0;    // compute: end; comm: when completed
};

struct SimResult {
  double makespan = 0;
  double bubble = 0;        // max over ranks of makespan - busy
  double bubble_ratio = 0;  // bubble / makespan
  std::vector<RankStats> ranks;
  std::vector<std::vector<Interval>> timeline;  // [rank][action]
  // With phase costs: each rank's expert-parallel exchanges, in absolute
  // times (for traces).
  std::vector<std::vector<PhaseSpan>> exchanges;  // [rank]
  // Compute actions (rank, index) whose chain of waits decides the makespan,
  // first to last.
  std::vector<std::pair<int, int>> critical_path;
};

// Simulate()
//
// Simulates `s`; a compute-only schedule is lowered first (CommStyle::kAuto).
// Returns kInvalidArgument for a malformed program (per-stage cost lists of
// the wrong length, unmatched sends or receives) and for a deadlock, naming
// every blocked rank, its position and action, and whom it waits for.
absl::StatusOr<SimResult> Simulate(const Schedule& s, const SimOptions& options);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_SIMULATOR_SIMULATOR_H_
