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
//   ForwardBackward(...)     an overlapped F and B (DualPipe's F&B); on the
//                            CPU the two run on two threads
// A micro-batch's saved activations are released when its backward starts
// (what W still needs is held by the deferred closures, released by W).
//
// Thread safety: one call at a time, except that ForwardBackward runs its
// forward and backward concurrently. With expert parallelism the MoE layers
// talk to other ranks; then set Options::overlap_threads = false so that
// collectives keep the same order on every rank.
#ifndef TANDEM_MODEL_STAGE_H_
#define TANDEM_MODEL_STAGE_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/model.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

// MeasureUnitCosts()
//
// Seconds per unit of `model` for one forward and full backward of `input`
// (unit by unit, median of `repeats` runs), as costs for the partitioner.
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
    // ForwardBackward() runs F and B on two threads.
    bool overlap_threads = true;
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

  struct ForwardBackwardResult {
    Tensor output;      // as Forward()
    Tensor input_grad;  // as Backward()
  };
  // Stage::ForwardBackward()
  //
  // Forward(mb_f, ...) and Backward(mb_b, ...) (full backward, as in
  // DualPipe), concurrently when overlap_threads. mb_f must differ from
  // mb_b. The first error of the two is returned.
  absl::StatusOr<ForwardBackwardResult> ForwardBackward(int mb_f, const Tensor& input, const Target* target, int mb_b,
                                                        const Tensor& output_grad);

  // The loss of micro-batch mb (last stage, after its Forward()).
  absl::StatusOr<double> loss(int mb) const;
  // Micro-batches whose activations are held (forward done, backward not).
  int live_microbatches() const;
  WeightGradStore& store() { return *store_; }

 private:
  struct MicroBatch {
    std::vector<std::unique_ptr<UnitModel::UnitState>> states;  // per unit
    Tensor loss_grad;                                           // last stage: dL/d(head output)
  };
  Stage(UnitModel* model, int begin, int end, Options options);
  absl::StatusOr<Tensor> RunBackward(int mb, const Tensor& output_grad, WeightGradStore* store);

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

}  // namespace tandem::model

#endif  // TANDEM_MODEL_STAGE_H_
