// -----------------------------------------------------------------------------
// File: stage_work.h
// -----------------------------------------------------------------------------
//
// What the executor asks of a rank's stages: forward, backward (full, input
// only, deferred weight), and the overlapped pair, for one stage copy
// (stage, direction) and micro-batch (per direction) at a time. Activations
// and gradients cross ranks as flat f32 buffers; the first stage reads its
// own input and the last computes its own loss, so both get and return empty
// buffers there. Buffers live in the stage's memory (host or GPU); the
// executor only passes them to the communicator. The model's pipeline
// stages implement it (see model_stage_work.h); EmulatedStageWork only
// waits for the cost model's time.

#ifndef TANDEM_SCHEDULE_EXECUTOR_STAGE_WORK_H_
#define TANDEM_SCHEDULE_EXECUTOR_STAGE_WORK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "comm/communicator.h"
#include "comm/overlap/phase_trace.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/cost_model.h"

namespace tandem::schedule {

// A flat f32 activation or gradient in host or device memory. Copies share
// the storage, which is freed with the last copy.
class Buffer {
 public:
  Buffer() = default;
  // Host memory holding `values`.
  explicit Buffer(std::vector<float> values);
  // `size` floats at `storage` (host or device; the deleter frees it).
  Buffer(std::shared_ptr<void> storage, int64_t size) : storage_(std::move(storage)), size_(size) {}

  float* data() const { return static_cast<float*>(storage_.get()); }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::shared_ptr<void>& storage() const { return storage_; }

 private:
  std::shared_ptr<void> storage_;
  int64_t size_ = 0;
};

// Identifies a stage copy and micro-batch.
struct Slot {
  int stage = 0;
  int direction = 0;
  int mb = 0;
};

class StageWork {
 public:
  virtual ~StageWork() = default;

  // Elements of the activation entering `stage` (= leaving stage - 1) for
  // this micro-batch; gradients have the same size. Receivers size their
  // buffers with it.
  virtual int64_t BoundaryElements(const Slot& s) const = 0;
  // A buffer of `elements` floats where this rank's stages keep their
  // tensors; receives land in it. The default is host memory.
  virtual absl::StatusOr<Buffer> NewBuffer(int64_t elements);

  // F: `input` is the previous stage's output (empty for stage 0); returns
  // this stage's output (empty for the last stage).
  virtual absl::StatusOr<Buffer> Forward(const Slot& s, Buffer input) = 0;
  // B and I: `output_grad` is the next stage's input gradient (empty for the
  // last stage); returns the gradient of this stage's input (empty for
  // stage 0). I defers the weight gradient as one unit of the rank's FIFO.
  virtual absl::StatusOr<Buffer> Backward(const Slot& s, Buffer output_grad) = 0;
  virtual absl::StatusOr<Buffer> BackwardInput(const Slot& s, Buffer output_grad) = 0;
  // W: runs the oldest deferred unit, which must belong to `s`.
  virtual absl::Status BackwardWeight(const Slot& s) = 0;
  // FB: the forward of `f` overlapped with the full backward of `b`. The
  // default runs them one after the other.
  virtual absl::StatusOr<std::pair<Buffer, Buffer>> ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                                    Buffer output_grad);

  // The expert-parallel exchanges the passes posted, for the executor's
  // trace (a work that records them); none by default.
  virtual std::vector<comm::ExchangeSpan> Exchanges() const { return {}; }
};

// EmulatedStageWork: every action sleeps for its cost-model duration
// (`unit` per cost unit) and moves buffers of `elements` zeros. Used to
// measure the executor against the simulator without compute.
class EmulatedStageWork : public StageWork {
 public:
  EmulatedStageWork(const Schedule& s, CostModel cost, absl::Duration unit, int64_t elements)
      : schedule_(s), cost_(std::move(cost)), unit_(unit), elements_(elements) {}

  int64_t BoundaryElements(const Slot&) const override { return elements_; }
  absl::StatusOr<Buffer> Forward(const Slot& s, Buffer input) override;
  absl::StatusOr<Buffer> Backward(const Slot& s, Buffer output_grad) override;
  absl::StatusOr<Buffer> BackwardInput(const Slot& s, Buffer output_grad) override;
  absl::Status BackwardWeight(const Slot& s) override;
  absl::StatusOr<std::pair<Buffer, Buffer>> ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                            Buffer output_grad) override;

 protected:
  // Sleeps for `a`'s cost; a buffer of zeros (empty when `empty`).
  void Spend(const Action& a) const;
  Buffer Out(bool empty) const { return empty ? Buffer() : Buffer(std::vector<float>(elements_)); }
  bool IsLast(const Slot& s) const { return s.stage == schedule_.stages - 1; }

 private:
  const Schedule& schedule_;
  const CostModel cost_;
  const absl::Duration unit_;
  const int64_t elements_;
};

// SlowedStageWork: `inner`'s passes on a device of relative speed `speed`
// (0 < speed <= 1): each pass runs, then waits (1 / speed - 1) times its
// duration, so the rank takes 1 / speed as long. Emulates an unequal device
// (a slower GPU) with the real compute in it.
class SlowedStageWork : public StageWork {
 public:
  SlowedStageWork(StageWork& inner, double speed) : inner_(inner), speed_(speed) {}

  int64_t BoundaryElements(const Slot& s) const override { return inner_.BoundaryElements(s); }
  absl::StatusOr<Buffer> NewBuffer(int64_t elements) override { return inner_.NewBuffer(elements); }
  absl::StatusOr<Buffer> Forward(const Slot& s, Buffer input) override;
  absl::StatusOr<Buffer> Backward(const Slot& s, Buffer output_grad) override;
  absl::StatusOr<Buffer> BackwardInput(const Slot& s, Buffer output_grad) override;
  absl::Status BackwardWeight(const Slot& s) override;
  absl::StatusOr<std::pair<Buffer, Buffer>> ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                            Buffer output_grad) override;
  std::vector<comm::ExchangeSpan> Exchanges() const override { return inner_.Exchanges(); }

 private:
  // Waits (1 / speed - 1) times the time since `start`.
  void Stretch(std::chrono::steady_clock::time_point start) const;

  StageWork& inner_;
  const double speed_;
};

// EmulatedPhasedStageWork: every action runs its phases (CostModel::phases,
// simulator/phase_program.h): compute phases sleep their time, exchanges are
// real all-to-alls of their bytes over `ep` (through an emulated network
// they take the modeled time), and an F&B interleaves its two passes as the
// model's F&B does (comm::Interleave). An action without a program sleeps
// its scalar cost (`unit` per cost unit, as EmulatedStageWork). Every rank
// of an EP group must run the same stage. Used to check the executor and
// the emulated network against the simulator's phase model.
class EmulatedPhasedStageWork : public EmulatedStageWork {
 public:
  EmulatedPhasedStageWork(const Schedule& s, CostModel cost, absl::Duration unit, int64_t elements,
                          comm::Communicator* ep, bool overlap = true);

  absl::StatusOr<Buffer> Forward(const Slot& s, Buffer input) override;
  absl::StatusOr<Buffer> Backward(const Slot& s, Buffer output_grad) override;
  absl::StatusOr<Buffer> BackwardInput(const Slot& s, Buffer output_grad) override;
  absl::Status BackwardWeight(const Slot& s) override;
  absl::StatusOr<std::pair<Buffer, Buffer>> ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                            Buffer output_grad) override;
  std::vector<comm::ExchangeSpan> Exchanges() const override { return comm::ExchangeSpans(trace_.events()); }

 private:
  class Pass;
  // Send and receive buffers by (chain, exchange), kept across passes.
  using Buffers = std::map<std::pair<int, int>, std::vector<char>>;
  // Runs action `a` (one pass, or an F&B pair) by its phases, or sleeps its
  // cost when it has no program.
  absl::Status Run(const Action& a);

  const CostModel cost_;
  comm::Communicator* ep_;
  const bool overlap_;
  comm::PhaseTrace trace_;
  Buffers buffers_;
};

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_EXECUTOR_STAGE_WORK_H_
