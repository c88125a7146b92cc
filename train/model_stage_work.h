// -----------------------------------------------------------------------------
// File: model_stage_work.h
// -----------------------------------------------------------------------------
//
// StageWork over the reference MoE model (//model): for each stage copy a
// schedule places on this rank, a model created from the same config and
// seed (so every copy starts with the same parameters) and a model::Stage
// over the units of that stage. All copies of a rank share one weight-
// gradient FIFO, as DualPipe's WeightGradStore. Micro-batch g = direction *
// (N / directions) + mb reads inputs[g] and, on the last stage, targets[g].
//
// Sequential() is the reference the executor is checked against: every
// micro-batch through one whole model, forward then backward, in order.
//
// A ModelPlacer moves each copy elsewhere (model/cuda/gpu_model.h: onto a
// GPU); the stages then run there and the buffers they exchange live there.

#ifndef TANDEM_TRAIN_MODEL_STAGE_WORK_H_
#define TANDEM_TRAIN_MODEL_STAGE_WORK_H_

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "base/deadline.h"
#include "comm/communicator.h"
#include "comm/overlap/phase_trace.h"
#include "model/config.h"
#include "model/model.h"
#include "model/stage.h"
#include "model/weight_grad_store.h"
#include "schedule/executor/stage_work.h"
#include "train/data.h"

namespace tandem::train {

using schedule::Buffer;
using schedule::Schedule;
using schedule::Slot;

// Makes the model a stage copy runs on from the host model it was created
// as (same parameters); the host model keeps receiving the gradients
// through UnitModel::SyncGradients().
using ModelPlacer = std::function<absl::StatusOr<std::unique_ptr<model::UnitModel>>(model::Model& host)>;

// Unit boundaries of `stages` stages over `units` units, as even as possible:
// stage s holds units [bounds[s], bounds[s + 1]).
std::vector<int> EvenBounds(int units, int stages);

class ModelStageWork : public schedule::StageWork {
 public:
  struct Options {
    // F&B interleaves its forward and backward on this thread, each
    // computing while the other's expert-parallel exchange travels, and MoE
    // passes overlap the shared expert with their own dispatch (false:
    // every exchange is waited for at once). Same bits either way.
    bool overlap = true;
    // Record every pass's phases (trace()).
    bool trace = false;
    // Runs on each new model copy, in (direction, stage) order (for example
    // to distribute its experts; collectives then keep one order).
    std::function<absl::Status(model::Model&)> prepare;
    ModelPlacer placer;  // nullptr: the copies run on the host
  };

  // Create()
  //
  // kInvalidArgument when `bounds` does not split the model's units into
  // the schedule's stages.
  static absl::StatusOr<std::unique_ptr<ModelStageWork>> Create(const Schedule& s, int rank,
                                                                const model::ModelConfig& config,
                                                                std::vector<int> bounds, Options options);

  // SetData()
  //
  // The data the next step reads (not owned; must outlive the step).
  // kInvalidArgument when it has fewer micro-batches than the schedule.
  absl::Status SetData(const PipelineData* data);

  int64_t BoundaryElements(const Slot& s) const override;
  absl::StatusOr<Buffer> NewBuffer(int64_t elements) override;
  absl::StatusOr<Buffer> Forward(const Slot& s, Buffer input) override;
  absl::StatusOr<Buffer> Backward(const Slot& s, Buffer output_grad) override;
  absl::StatusOr<Buffer> BackwardInput(const Slot& s, Buffer output_grad) override;
  absl::Status BackwardWeight(const Slot& s) override;
  absl::StatusOr<std::pair<Buffer, Buffer>> ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                            Buffer output_grad) override;

  // Losses of the micro-batches whose last stage runs here, by global id.
  std::map<int, double> losses() const;
  // The model copy of (stage, direction) on this rank, or nullptr; its
  // parameters of the stage's units are the ones this copy trains.
  model::Model* model(int stage, int direction) const;
  const std::vector<int>& bounds() const { return bounds_; }
  // The phases of the passes since the last ClearTrace() (Options::trace),
  // chain 0 the forward of an F&B, 1 its backward; nullptr without trace.
  const comm::PhaseTrace* trace() const { return options_.trace ? &trace_ : nullptr; }
  void ClearTrace() { trace_.Clear(); }
  // The traced expert-parallel exchanges (for the executor's trace).
  std::vector<comm::ExchangeSpan> Exchanges() const override { return comm::ExchangeSpans(trace_.events()); }
  // Every (stage, direction) copy on this rank, in (stage, direction) order.
  std::vector<std::pair<int, int>> copies() const;
  // SumCopyGradients()
  //
  // DualPipe holds each stage twice (ranks r and R-1-r); after a step the two
  // copies' gradients are summed by an all-reduce over `pair`, the
  // communicator of ranks r and R-1-r (ranked r first). Both copies then
  // hold the full gradient and stay identical after the optimizer step.
  // No-op for one-direction schedules.
  absl::Status SumCopyGradients(comm::Communicator& pair, Deadline deadline);
  // Makes the gradients of placed copies visible in their host models
  // (model()); call after the step, before reading or summing them.
  absl::Status SyncGradients();
  // After the host models' parameters changed (an optimizer step, expert
  // moves): placed copies take the new values and zero their gradients.
  absl::Status ReloadParameters();

 private:
  struct Copy {
    std::unique_ptr<model::Model> model;
    std::unique_ptr<model::UnitModel> placed;  // with a ModelPlacer
    std::unique_ptr<model::Stage> stage;       // over placed, else model
  };
  ModelStageWork(const Schedule& s, std::vector<int> bounds, Options options)
      : s_(s), bounds_(std::move(bounds)), options_(std::move(options)) {}
  absl::StatusOr<Copy*> At(const Slot& s);
  int Global(const Slot& s) const { return s.direction * s_.microbatches_per_direction() + s.mb; }
  absl::StatusOr<model::Tensor> AsTensor(const Slot& s, Buffer b) const;

  const Schedule& s_;
  const std::vector<int> bounds_;
  const Options options_;
  comm::PhaseTrace trace_;
  const PipelineData* data_ = nullptr;
  model::WeightGradStore store_;
  std::map<std::pair<int, int>, Copy> copies_;  // (stage, direction)
};

// Sequential()
//
// The reference: one model, micro-batches 0..N-1 in order, each forward then
// full backward. Returns the losses; the model keeps the gradients.
absl::StatusOr<std::vector<double>> Sequential(model::UnitModel& m, const PipelineData& data);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_MODEL_STAGE_WORK_H_
