#include "schedule/executor/stage_work.h"

#include <chrono>

#include "absl/time/time.h"
#include "base/sleep.h"

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

}  // namespace tandem::schedule
