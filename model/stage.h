// -----------------------------------------------------------------------------
// File: stage.h
// -----------------------------------------------------------------------------
//
// A pipeline stage: units [begin, end) of a UnitModel (model.h: the model on
// the host, or on a GPU with model/cuda/gpu_model.h), with the
// operations a pipeline executor calls. Activations and gradients cross
// stage boundaries as f32 [T, hidden] Tensors in the model's memory, so an
// executor can send them anywhere; running every micro-batch through all
// stages in order on one rank reproduces the single-stage model exactly
// (same bits: nothing is summed differently).
//
//   Forward(mb, x)           saves what backward needs, per micro-batch;
//                            the last stage computes the loss instead of
//                            returning the head output (loss(mb) has it)
//   BackwardInput(mb, dy)    input gradient now; weight gradients become
//                            one unit of the WeightGradStore (I of ZB)
//   Backward(mb, dy)         input and weight gradients now (B)
//   BackwardWeight()         pops the oldest unit of the store (W)
//   ForwardBackward(f, ...)  an F on one stage and a B on another (or the
//                            same), overlapped: DualPipe's F&B
// A micro-batch's saved activations are released when its backward starts
// (what W still needs is held by the deferred closures, released by W).
//
// Every pass is a phased task over the units (comm/overlap): with expert
// parallelism a MoE block posts its token exchanges and returns, so
// ForwardBackward() computes one micro-batch while the other's exchange
// travels, on one thread, in an order every EP rank shares. Results are the
// same bits with or without overlap (Options::phases).
//
// Thread safety: one call at a time per stage.
#ifndef TANDEM_MODEL_STAGE_H_
#define TANDEM_MODEL_STAGE_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comm/overlap/phased_task.h"
#include "model/model.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

// MeasureUnitCosts()
//
// Seconds per unit of `model` for one forward and full backward of `input`
// (unit by unit, median of `repeats` runs), as costs for the partitioner (plan/partition.h).
// Gradients accumulate into the model (call ZeroGrad() after).
// kInvalidArgument for repeats < 1 or a bad input/target.
absl::StatusOr<std::vector<double>> MeasureUnitCosts(Model& model, const Tensor& input, const Target& target,
                                                     int repeats);

class Stage {
 public:
  struct Options {
    // The rank's store, shared by all its stages (DualPipe keeps one FIFO
    // per rank); nullptr: the stage owns one.
    WeightGradStore* store = nullptr;
    // Overlap of communication with compute, and the trace of the passes.
    comm::PhaseOptions phases;
  };

  // Stage::Create()
  //
  // kInvalidArgument unless 0 <= begin < end <= model->num_units().
  static absl::StatusOr<std::unique_ptr<Stage>> Create(UnitModel* model, int begin, int end, Options options);

  bool is_first() const { return begin_ == 0; }
  bool is_last() const { return end_ == model_->num_units(); }
  int begin() const { return begin_; }
  int end() const { return end_; }

  // Stage::Forward()
  //
  // The first stage takes the model input [T, input_dim], others the
  // previous stage's output [T, hidden]. Returns the output activation
  // [T, hidden], or on the last stage a [1] tensor with the loss (the
  // double is in loss(mb)); the last stage needs `target`.
  // kFailedPrecondition if mb already has a saved forward; kInvalidArgument
  // for bad shapes or a missing target.
  absl::StatusOr<Tensor> Forward(int mb, const Tensor& input, const Target* target = nullptr);

  // Stage::BackwardInput(), Stage::Backward()
  //
  // The gradient with respect to this stage's input, from the gradient of
  // its output (ignored on the last stage, which starts from its loss:
  // pass an empty Tensor). BackwardInput() queues the weight gradients as
  // one store unit; Backward() accumulates them now. kFailedPrecondition
  // when mb has no saved forward.
  absl::StatusOr<Tensor> BackwardInput(int mb, const Tensor& output_grad);
  absl::StatusOr<Tensor> Backward(int mb, const Tensor& output_grad);

  // Stage::BackwardWeight()
  //
  // Pops and runs the oldest store unit; kFailedPrecondition when none.
  absl::Status BackwardWeight();

  // Stage::ForwardTask(), Stage::BackwardTask()
  //
  // Forward() and Backward() (BackwardInput() when `defer_weights`) as
  // phased tasks; *out holds the result when the task is done. Errors are
  // those of the passes, returned by Step().
  std::unique_ptr<comm::PhasedTask> ForwardTask(int mb, Tensor input, const Target* target, Tensor* out);
  std::unique_ptr<comm::PhasedTask> BackwardTask(int mb, Tensor output_grad, bool defer_weights, Tensor* out);

  // The loss of micro-batch mb (last stage, after its Forward()).
  absl::StatusOr<double> loss(int mb) const;
  // Micro-batches whose activations are held (forward done, backward not).
  int live_microbatches() const;
  WeightGradStore& store() { return *store_; }
  const Options& options() const { return options_; }

 private:
  struct MicroBatch {
    std::vector<std::unique_ptr<UnitModel::UnitState>> states;  // per unit
    Tensor loss_grad;                                           // last stage: dL/d(head output)
  };
  class ForwardPass;
  class BackwardPass;
  Stage(UnitModel* model, int begin, int end, Options options);

  UnitModel* model_;
  int begin_;
  int end_;
  Options options_;
  std::unique_ptr<WeightGradStore> own_store_;
  WeightGradStore* store_;
  mutable absl::Mutex mu_;
  std::map<int, MicroBatch> live_ ABSL_GUARDED_BY(mu_);
  std::map<int, double> losses_ ABSL_GUARDED_BY(mu_);
};

struct ForwardBackwardResult {
  Tensor output;      // as Stage::Forward()
  Tensor input_grad;  // as Stage::Backward()
};

// ForwardBackward()
//
// Forward(mb_f, input, target) on stage `f` and the full Backward(mb_b,
// output_grad) on stage `b` (they may be the same stage, then mb_f !=
// mb_b), interleaved (comm::Interleave, F first): while one's exchange
// travels, the other computes. With f's options.phases.overlap false, F
// runs to its end, then B. The first error of the two is returned.
absl::StatusOr<ForwardBackwardResult> ForwardBackward(Stage& f, int mb_f, const Tensor& input, const Target* target,
                                                      Stage& b, int mb_b, const Tensor& output_grad);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_STAGE_H_
