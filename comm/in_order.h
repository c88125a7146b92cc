// -----------------------------------------------------------------------------
// File: in_order.h
// -----------------------------------------------------------------------------
//
// Every backend completes a rank's operations in posting order: waiting on
// one first completes those posted before it. InOrderWork is the Work handle
// of such an operation; CompleteInOrder() is the host backends' drain loop.

#ifndef TANDEM_COMM_IN_ORDER_H_
#define TANDEM_COMM_IN_ORDER_H_

#include <deque>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/deadline.h"
#include "comm/communicator.h"
#include "comm/flight_recorder.h"

namespace tandem::comm {

// The Work of operation `op` (which has `bool done` and `absl::Status status`)
// of `comm`, whose `Progress(Op* target, Deadline)` completes pending
// operations in order up to and including `target`.
template <typename Comm, typename Op>
class InOrderWork : public Work {
 public:
  InOrderWork(Comm* comm, std::shared_ptr<Op> op) : comm_(comm), op_(std::move(op)) {}

  absl::Status Wait(Deadline deadline) override { return comm_->Progress(op_.get(), deadline); }

  bool IsCompleted() override {
    if (op_->done) return true;
    // Try to finish without blocking.
    return comm_->Progress(op_.get(), Deadline::In(absl::ZeroDuration())).ok() || op_->done;
  }

 private:
  Comm* comm_;
  std::shared_ptr<Op> op_;
};

// Completes `pending` front to back until `target` is done and returns its
// status. `complete(op, deadline)` gives an operation's final status; a
// kDeadlineExceeded one stays pending and is returned with `rank`'s recent
// history from `recorder`.
template <typename Op, typename Complete>
absl::Status CompleteInOrder(std::deque<std::shared_ptr<Op>>* pending, Op* target, Deadline deadline,
                             FlightRecorder* recorder, int rank, Complete complete) {
  while (!target->done) {
    std::shared_ptr<Op> op = pending->front();
    absl::Status s = complete(op.get(), deadline);
    if (absl::IsDeadlineExceeded(s)) {
      return absl::DeadlineExceededError(absl::StrCat(s.message(), "; ", recorder->Dump(rank)));
    }
    op->status = std::move(s);
    op->done = true;
    recorder->Completed(op->seq);
    pending->pop_front();
  }
  return target->status;
}

}  // namespace tandem::comm

#endif  // TANDEM_COMM_IN_ORDER_H_
