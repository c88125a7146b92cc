// -----------------------------------------------------------------------------
// File: executor.h
// -----------------------------------------------------------------------------
//
// Runs one rank's program of a lowered schedule on any Communicator: posts
// each batch of sends and receives where it stands, waits for it before the
// action at its wait_before, runs F, B, I, W and FB on the rank's stages
// (StageWork), passes tensors locally between stages on the same rank (the V
// turnaround), and frees each activation once it is sent and consumed. With
// forward_only, backward actions and gradient messages are skipped on every
// rank alike (inference runs the same schedules).
//
// Faults: a rank whose stage fails posts "rank R position P (ACTION): why"
// on the AbortBoard; every waiting rank checks the board and returns
// kAborted with that text. A peer that stops answering makes the waiting
// rank fail with kDeadlineExceeded after `timeout`, naming the action, the
// operation and the peers it waited for. Nothing waits forever.
//
// Example (threads):
//   MemoryAbortBoard board;
//   // thread r: RunRank(lowered, r, *work[r], *comms[r], {.abort = &board});

#ifndef TANDEM_SCHEDULE_EXECUTOR_EXECUTOR_H_
#define TANDEM_SCHEDULE_EXECUTOR_EXECUTOR_H_

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comm/communicator.h"
#include "comm/store/store.h"
#include "schedule/executor/stage_work.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {

// Where the first failing rank says why; shared by all ranks of a run.
class AbortBoard {
 public:
  virtual ~AbortBoard() = default;
  virtual void Post(const std::string& why) = 0;  // the first post wins
  virtual std::optional<std::string> Check() = 0;
};

class MemoryAbortBoard : public AbortBoard {
 public:
  void Post(const std::string& why) override;
  std::optional<std::string> Check() override;

 private:
  absl::Mutex mu_;
  std::optional<std::string> why_ ABSL_GUARDED_BY(mu_);
};

// For processes: the reason under `key` of a shared store.
class StoreAbortBoard : public AbortBoard {
 public:
  StoreAbortBoard(comm::Store* store, std::string key) : store_(store), key_(std::move(key)) {}
  void Post(const std::string& why) override;
  std::optional<std::string> Check() override;

 private:
  comm::Store* store_;
  const std::string key_;
};

struct ExecutorOptions {
  absl::Duration timeout = absl::Minutes(5);  // for each wait
  AbortBoard* abort = nullptr;
  bool forward_only = false;
};

struct RankRun {
  int rank = 0;
  // When the program started, to align the ranks' timelines (the threads or
  // processes of one host share the steady clock).
  std::chrono::steady_clock::time_point start;
  double step_us = 0;     // wall time of the whole program
  double compute_us = 0;  // inside StageWork
  double wait_us = 0;     // blocked on communication
  // Per action, microseconds from the start of the step: compute start/end,
  // or a send/receive's posting and completion.
  std::vector<Interval> timeline;
  // The stage work's expert-parallel exchanges (StageWork::Exchanges()),
  // microseconds from the start of the step: posted, result in hand.
  struct Exchange {
    double start = 0;
    double end = 0;
    std::string what;
  };
  std::vector<Exchange> exchanges;
};

// RunRank()
//
// Runs `rank`'s program of lowered `s` (kFailedPrecondition if not lowered).
absl::StatusOr<RankRun> RunRank(const Schedule& s, int rank, StageWork& work, comm::Communicator& comm,
                                const ExecutorOptions& options);

// Chrome/Perfetto trace JSON of the ranks' runs, with the action ids
// "r<rank>.<index>" that RenderChromeTrace gives the simulator's timeline
// and the expert-parallel exchanges on the communication track; times are
// from the earliest rank's start.
absl::StatusOr<std::string> ExecutorChromeTrace(const Schedule& s, const std::vector<RankRun>& runs);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_EXECUTOR_EXECUTOR_H_
