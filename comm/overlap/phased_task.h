// -----------------------------------------------------------------------------
// File: phased_task.h
// -----------------------------------------------------------------------------
//
// Work that overlaps its communication with other work on one thread. A
// PhasedTask is compute and posted communication: Step() computes and posts
// up to a point where the other task of a pair should run, usually where it
// needs the result of something it posted (it returns false there, leaving
// the wait to the next Step()), or to its end (true). Interleave() runs two
// tasks by alternating at those points: while one task's operations are in
// flight, the other computes (DualPipe's F&B). The order is fixed by the
// tasks alone, so ranks that run the same pair of tasks post their
// collectives in the same order, and nothing needs a second thread.
//
// A PhaseTrace, when set, records what the tasks did and when: steps,
// posts, waits and labelled compute, for tests of the order and for the
// overlap figures (phase_trace.h).
#ifndef TANDEM_COMM_OVERLAP_PHASED_TASK_H_
#define TANDEM_COMM_OVERLAP_PHASED_TASK_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "comm/overlap/phase_trace.h"

namespace tandem::comm {

class PhasedTask {
 public:
  virtual ~PhasedTask() = default;

  // PhasedTask::Step()
  //
  // Runs to the task's next yield point (false) or to the end (true). Not
  // called again after true or an error.
  virtual absl::StatusOr<bool> Step() = 0;
};

// How a phased task runs: overlap false waits for every operation as soon as
// it is posted (nothing overlaps, not even inside one task); `trace`, when
// set, records what it does.
struct PhaseOptions {
  bool overlap = true;
  PhaseTrace* trace = nullptr;
};

// OneStep()
//
// A task that runs `fn` in a single step (work with nothing to overlap).
std::unique_ptr<PhasedTask> OneStep(std::function<absl::Status()> fn);

// RunToEnd()
//
// Steps `task` until it is done; its own waits follow each post. `trace`
// (optional) records the steps as chain `chain`.
absl::Status RunToEnd(PhasedTask& task, PhaseTrace* trace = nullptr, int chain = 0);

// Interleave()
//
// Steps `first` (chain 0) and `second` (chain 1) alternately, starting with
// `first`, each until it would wait or ends; when one ends the other runs to
// its end. The first error of either is returned; the other task is then left
// unfinished (its posted operations are abandoned with it).
absl::Status Interleave(PhasedTask& first, PhasedTask& second, PhaseTrace* trace = nullptr);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_OVERLAP_PHASED_TASK_H_
