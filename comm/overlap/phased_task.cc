#include "comm/overlap/phased_task.h"

#include <utility>

namespace tandem::comm {
namespace {

using Kind = PhaseEvent::Kind;

absl::StatusOr<bool> TracedStep(PhasedTask& task, PhaseTrace* trace, int chain) {
  if (trace == nullptr) return task.Step();
  trace->set_chain(chain);
  trace->Record(Kind::kStepBegin);
  absl::StatusOr<bool> done = task.Step();
  trace->set_chain(chain);
  trace->Record(Kind::kStepEnd);
  return done;
}

class OneStepTask : public PhasedTask {
 public:
  explicit OneStepTask(std::function<absl::Status()> fn) : fn_(std::move(fn)) {}
  absl::StatusOr<bool> Step() override {
    absl::Status s = fn_();
    if (!s.ok()) return s;
    return true;
  }

 private:
  std::function<absl::Status()> fn_;
};

}  // namespace

std::unique_ptr<PhasedTask> OneStep(std::function<absl::Status()> fn) {
  return std::make_unique<OneStepTask>(std::move(fn));
}

absl::Status RunToEnd(PhasedTask& task, PhaseTrace* trace, int chain) {
  while (true) {
    absl::StatusOr<bool> done = TracedStep(task, trace, chain);
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
  }
}

absl::Status Interleave(PhasedTask& first, PhasedTask& second, PhaseTrace* trace) {
  PhasedTask* tasks[2] = {&first, &second};
  bool done[2] = {false, false};
  for (int turn = 0; !done[0] || !done[1]; turn ^= 1) {
    if (done[turn]) continue;
    absl::StatusOr<bool> d = TracedStep(*tasks[turn], trace, turn);
    if (!d.ok()) return d.status();
    done[turn] = *d;
  }
  return absl::OkStatus();
}

}  // namespace tandem::comm
