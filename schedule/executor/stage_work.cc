#include "schedule/executor/stage_work.h"

#include <chrono>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "base/sleep.h"
#include "base/status_macros.h"
#include "comm/overlap/phased_task.h"

namespace tandem::schedule {

Buffer::Buffer(std::vector<float> values) : size_(static_cast<int64_t>(values.size())) {
  auto held = std::make_shared<std::vector<float>>(std::move(values));
  storage_ = std::shared_ptr<void>(held, held->data());
}

absl::StatusOr<Buffer> StageWork::NewBuffer(int64_t elements) { return Buffer(std::vector<float>(elements)); }

absl::StatusOr<std::pair<Buffer, Buffer>> StageWork::ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                                     Buffer output_grad) {
  absl::StatusOr<Buffer> out = Forward(f, std::move(input));
  if (!out.ok()) return out.status();
  absl::StatusOr<Buffer> grad = Backward(b, std::move(output_grad));
  if (!grad.ok()) return grad.status();
  return std::make_pair(*std::move(out), *std::move(grad));
}

void SlowedStageWork::Stretch(std::chrono::steady_clock::time_point start) const {
  const auto now = std::chrono::steady_clock::now();
  const double extra = 1.0 / speed_ - 1.0;
  if (extra <= 0) return;
  SleepUntil(now + std::chrono::duration_cast<std::chrono::steady_clock::duration>((now - start) * extra));
}

absl::StatusOr<Buffer> SlowedStageWork::Forward(const Slot& s, Buffer input) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Buffer> out = inner_.Forward(s, std::move(input));
  Stretch(start);
  return out;
}

absl::StatusOr<Buffer> SlowedStageWork::Backward(const Slot& s, Buffer output_grad) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Buffer> out = inner_.Backward(s, std::move(output_grad));
  Stretch(start);
  return out;
}

absl::StatusOr<Buffer> SlowedStageWork::BackwardInput(const Slot& s, Buffer output_grad) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Buffer> out = inner_.BackwardInput(s, std::move(output_grad));
  Stretch(start);
  return out;
}

absl::Status SlowedStageWork::BackwardWeight(const Slot& s) {
  const auto start = std::chrono::steady_clock::now();
  absl::Status out = inner_.BackwardWeight(s);
  Stretch(start);
  return out;
}

absl::StatusOr<std::pair<Buffer, Buffer>> SlowedStageWork::ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                                           Buffer output_grad) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::pair<Buffer, Buffer>> out =
      inner_.ForwardBackward(f, std::move(input), b, std::move(output_grad));
  Stretch(start);
  return out;
}

void EmulatedStageWork::Spend(const Action& a) const {
  SleepUntil(std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(unit_ * cost_.Duration(a)));
}

absl::StatusOr<Buffer> EmulatedStageWork::Forward(const Slot& s, Buffer) {
  Spend(Action::Compute(Op::kForward, s.stage, s.mb, s.direction));
  return Out(s.stage == schedule_.stages - 1);
}

absl::StatusOr<Buffer> EmulatedStageWork::Backward(const Slot& s, Buffer) {
  Spend(Action::Compute(Op::kBackward, s.stage, s.mb, s.direction));
  return Out(s.stage == 0);
}

absl::StatusOr<Buffer> EmulatedStageWork::BackwardInput(const Slot& s, Buffer) {
  Spend(Action::Compute(Op::kBackwardInput, s.stage, s.mb, s.direction));
  return Out(s.stage == 0);
}

absl::Status EmulatedStageWork::BackwardWeight(const Slot& s) {
  Spend(Action::Compute(Op::kBackwardWeight, s.stage, s.mb, s.direction));
  return absl::OkStatus();
}

absl::StatusOr<std::pair<Buffer, Buffer>> EmulatedStageWork::ForwardBackward(const Slot& f, Buffer, const Slot& b,
                                                                             Buffer) {
  Spend(Action::Overlap(f.stage, f.mb, f.direction, b.stage, b.mb, b.direction));
  return std::make_pair(Out(f.stage == schedule_.stages - 1), Out(b.stage == 0));
}

// A pass's phases as a phased task: compute sleeps, exchanges are
// all-to-alls on the EP communicator.
class EmulatedPhasedStageWork::Pass : public comm::PhasedTask {
 public:
  Pass(const PhaseProgram& p, comm::Communicator* ep, bool overlap, comm::PhaseTrace* trace, Buffers* buffers,
       int chain)
      : p_(p), ep_(ep), overlap_(overlap), trace_(trace), buffers_(buffers), chain_(chain) {}

  // Runs up to the next yield or the end; without overlap, to the end.
  absl::StatusOr<bool> Step() override {
    using Kind = comm::PhaseEvent::Kind;
    while (next_ < p_.size()) {
      const PhaseStep& s = p_[next_++];
      switch (s.kind) {
        case PhaseStep::Kind::kYield:
          if (overlap_ && next_ < p_.size()) return false;
          break;
        case PhaseStep::Kind::kCompute:
          trace_->Record(Kind::kComputeBegin, s.label);
          SleepUntil(std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                            std::chrono::duration<double, std::micro>(s.us)));
          trace_->Record(Kind::kComputeEnd, s.label);
          break;
        case PhaseStep::Kind::kPost: {
          Exchange& x = exchanges_[s.exchange];
          x.label = s.label;
          // Buffers are kept across passes: fresh megabytes would cost page
          // faults that no compute phase accounts for.
          std::vector<char>& buffer = (*buffers_)[{chain_, s.exchange}];
          buffer.resize(2 * s.bytes * ep_->size());
          absl::StatusOr<std::unique_ptr<comm::Work>> w =
              ep_->AllToAll(buffer.data(), buffer.data() + s.bytes * ep_->size(), s.bytes, comm::DataType::kBytes);
          if (!w.ok()) return w.status();
          x.work = *std::move(w);
          trace_->Record(Kind::kPost, s.label);
          break;
        }
        case PhaseStep::Kind::kWait: {
          Exchange& x = exchanges_[s.exchange];
          trace_->Record(Kind::kWaitBegin, x.label);
          const absl::Status st = x.work->Wait(Deadline::In(absl::Minutes(1)));
          if (!st.ok()) return st;
          trace_->Record(Kind::kWaitEnd, x.label);
          break;
        }
      }
    }
    return true;
  }

 private:
  struct Exchange {
    std::string label;
    std::unique_ptr<comm::Work> work;
  };
  const PhaseProgram& p_;
  comm::Communicator* ep_;
  const bool overlap_;
  comm::PhaseTrace* trace_;
  Buffers* buffers_;
  const int chain_;
  size_t next_ = 0;
  std::map<int, Exchange> exchanges_;
};

EmulatedPhasedStageWork::EmulatedPhasedStageWork(const Schedule& s, CostModel cost, absl::Duration unit,
                                                 int64_t elements, comm::Communicator* ep, bool overlap)
    : EmulatedStageWork(s, cost, unit, elements), cost_(std::move(cost)), ep_(ep), overlap_(overlap) {}

absl::Status EmulatedPhasedStageWork::Run(const Action& a) {
  const PhaseCosts* p = cost_.phases.get();
  const char name = a.op == Op::kForward ? 'F' : a.op == Op::kBackward ? 'B' : a.op == Op::kBackwardInput ? 'I' : 'W';
  if (a.op == Op::kForwardBackward) {
    const PhaseProgram *f = p == nullptr ? nullptr : p->Program('F', a.stage),
                       *b = p == nullptr ? nullptr : p->Program('B', a.stage_b);
    if (f != nullptr && b != nullptr) {
      Pass forward(*f, ep_, overlap_, &trace_, &buffers_, 0), backward(*b, ep_, overlap_, &trace_, &buffers_, 1);
      if (!overlap_) {
        absl::Status st = comm::RunToEnd(forward, &trace_, 0);
        return st.ok() ? comm::RunToEnd(backward, &trace_, 1) : st;
      }
      return comm::Interleave(forward, backward, &trace_);
    }
  } else if (const PhaseProgram* one = p == nullptr ? nullptr : p->Program(name, a.stage)) {
    Pass pass(*one, ep_, overlap_, &trace_, &buffers_, 0);
    return comm::RunToEnd(pass, &trace_, 0);
  }
  Spend(a);
  return absl::OkStatus();
}

absl::StatusOr<Buffer> EmulatedPhasedStageWork::Forward(const Slot& s, Buffer) {
  TANDEM_RETURN_IF_ERROR(Run(Action::Compute(Op::kForward, s.stage, s.mb, s.direction)));
  return Out(IsLast(s));
}

absl::StatusOr<Buffer> EmulatedPhasedStageWork::Backward(const Slot& s, Buffer) {
  TANDEM_RETURN_IF_ERROR(Run(Action::Compute(Op::kBackward, s.stage, s.mb, s.direction)));
  return Out(s.stage == 0);
}

absl::StatusOr<Buffer> EmulatedPhasedStageWork::BackwardInput(const Slot& s, Buffer) {
  TANDEM_RETURN_IF_ERROR(Run(Action::Compute(Op::kBackwardInput, s.stage, s.mb, s.direction)));
  return Out(s.stage == 0);
}

absl::Status EmulatedPhasedStageWork::BackwardWeight(const Slot& s) {
  return Run(Action::Compute(Op::kBackwardWeight, s.stage, s.mb, s.direction));
}

absl::StatusOr<std::pair<Buffer, Buffer>> EmulatedPhasedStageWork::ForwardBackward(const Slot& f, Buffer, const Slot& b,
                                                                                   Buffer) {
  TANDEM_RETURN_IF_ERROR(Run(Action::Overlap(f.stage, f.mb, f.direction, b.stage, b.mb, b.direction)));
  return std::make_pair(Out(IsLast(f)), Out(b.stage == 0));
}

}  // namespace tandem::schedule
