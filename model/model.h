// -----------------------------------------------------------------------------
// File: model.h
// -----------------------------------------------------------------------------
//
// The reference MoE model as a list of units, the granularity at which
// pipeline stages split it:
//   unit 0          input projection  h = x Win^T          (x [T, input_dim])
//   unit 1..L       block i-1         h = h + F(RMSNorm(h)), F = dense SwiGLU
//                                     for the first num_dense_layers blocks,
//                                     else the MoE layer
//   unit L+1        head              o = RMSNorm(h) Wout^T (o [T, output_dim])
// The loss (MSE or cross-entropy on o) is applied by the last stage
// (stage.h). Every unit has an explicit forward and a backward whose weight
// gradients can be deferred into a WeightGradStore. UnitModel is that unit
// interface, so the same stages run the model on the host (Model) or on a
// GPU (model/cuda/gpu_model.h). model/README.md gives the equations,
// initialisation and parameter names.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, Model::Create(config));
//   std::unique_ptr<Model::UnitState> st;
//   TANDEM_ASSIGN_OR_RETURN(Tensor h, m->UnitForward(0, x, &st));
#ifndef TANDEM_MODEL_MODEL_H_
#define TANDEM_MODEL_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "comm/overlap/phased_task.h"
#include "model/config.h"
#include "model/expert.h"
#include "model/linear.h"
#include "model/loss.h"
#include "model/moe_layer.h"
#include "model/rmsnorm.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

// What the last stage compares the head output with.
struct Target {
  Tensor values;                // MSE: [T, output_dim]
  std::vector<int32_t> labels;  // cross-entropy: T classes
  double normalizer = 0.0;      // loss.h; 0 = this micro-batch's own count
};

// UnitModel
//
// The unit interface a pipeline stage (stage.h) drives, whatever memory the
// model lives in: Model below on the host, GpuModel (model/cuda) on a GPU.
// Activations and gradients are Tensors in the model's own memory.
class UnitModel {
 public:
  // What a unit's backward needs from its forward; opaque.
  class UnitState {
   public:
    virtual ~UnitState() = default;
  };
  virtual ~UnitModel() = default;

  virtual const ModelConfig& config() const = 0;
  int num_units() const { return NumUnits(config()); }

  // Runs unit `unit` on x; kInvalidArgument for a bad unit index or input
  // shape. When `state` is non-null it receives what UnitBackward() needs.
  virtual absl::StatusOr<Tensor> UnitForward(int unit, const Tensor& x, std::unique_ptr<UnitState>* state) = 0;

  // The input gradient of unit `unit` from its output gradient; weight
  // gradients go to `store` (deferred) or accumulate now (nullptr).
  virtual absl::StatusOr<Tensor> UnitBackward(int unit, const UnitState& state, const Tensor& dy,
                                              WeightGradStore* store) = 0;

  // UnitModel::UnitForwardTask(), UnitModel::UnitBackwardTask()
  //
  // UnitForward() and UnitBackward() as phased tasks (comm/overlap): a unit
  // that exchanges tokens with other ranks (an expert-parallel MoE block)
  // posts each exchange and returns from Step(), so that other work can run
  // meanwhile; the result is in *out when the task is done. `state`, `out`
  // and `store` must outlive the task. The default runs the unit in one
  // step.
  virtual std::unique_ptr<comm::PhasedTask> UnitForwardTask(int unit, Tensor x, std::unique_ptr<UnitState>* state,
                                                            Tensor* out, const comm::PhaseOptions& options);
  virtual std::unique_ptr<comm::PhasedTask> UnitBackwardTask(int unit, const UnitState& state, Tensor dy,
                                                             WeightGradStore* store, Tensor* out,
                                                             const comm::PhaseOptions& options);

  // UnitModel::Loss()
  //
  // The config's loss of the head output `out`; the gradient is in out's
  // memory. The default computes it on the host (loss.h).
  virtual absl::StatusOr<LossResult> Loss(const Tensor& out, const Target& target);

  // UnitModel::NewActivation()
  //
  // A zero f32 tensor in this model's memory (receive buffers).
  virtual absl::StatusOr<Tensor> NewActivation(std::vector<int64_t> shape);

  // UnitModel::SyncGradients()
  //
  // Makes the accumulated gradients visible in the host Parameters (a
  // device model downloads them); no-op on the host.
  virtual absl::Status SyncGradients() { return absl::OkStatus(); }

  // UnitModel::ReloadParameters()
  //
  // After the host Parameters changed (an optimizer step, experts moved by
  // ApplyPlacement): a device model copies them in and zeroes its own
  // gradients; no-op on the host. No backward may be pending.
  virtual absl::Status ReloadParameters() { return absl::OkStatus(); }

 protected:
  // `state` as the state type T of unit `unit`'s forward; kInvalidArgument
  // when another unit (or model) made it.
  template <typename T>
  static absl::StatusOr<const T*> StateAs(const UnitState& state, int unit) {
    const T* s = dynamic_cast<const T*>(&state);
    if (s == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit ", unit, ": backward: state was not made by this unit's forward"));
    }
    return s;
  }
};

class Model : public UnitModel {
 public:
  // Model::Create()
  //
  // Validates `config` (ValidateConfig) and initialises every parameter
  // from config.seed: the same seed gives the same bits.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelConfig& config);

  const ModelConfig& config() const override { return config_; }

  // UnitModel's units on the host (host tensors).
  absl::StatusOr<Tensor> UnitForward(int unit, const Tensor& x, std::unique_ptr<UnitState>* state) override;
  absl::StatusOr<Tensor> UnitBackward(int unit, const UnitState& state, const Tensor& dy,
                                      WeightGradStore* store) override;
  // MoE blocks as phased tasks over their MoeLayer's (moe_layer.h); other
  // units in one step.
  std::unique_ptr<comm::PhasedTask> UnitForwardTask(int unit, Tensor x, std::unique_ptr<UnitState>* state, Tensor* out,
                                                    const comm::PhaseOptions& options) override;
  std::unique_ptr<comm::PhasedTask> UnitBackwardTask(int unit, const UnitState& state, Tensor dy,
                                                     WeightGradStore* store, Tensor* out,
                                                     const comm::PhaseOptions& options) override;

  // Trainable parameters of one unit / of all units, in a fixed order.
  std::vector<Parameter*> UnitParameters(int unit);
  std::vector<Parameter*> Parameters();
  // The parameters replicated over EP ranks (everything but routed experts).
  std::vector<Parameter*> ReplicatedParameters();

  // The MoE layers, in block order (empty entries for dense blocks are
  // skipped); moe_layers()[i] has moe_index() i.
  std::vector<MoeLayer*> moe_layers();

  // Model::SetLoadRecorder()
  //
  // Every MoE layer records its routing in `recorder` (layer = MoE index;
  // the recorder needs NumMoeLayers() layers and num_experts experts), or
  // stops recording with nullptr.
  void SetLoadRecorder(balance::LoadRecorder* recorder);

  // Model::ZeroGrad()
  //
  // Sets every gradient to zero.
  void ZeroGrad();

  // Model::EndStep()
  //
  // After an optimizer step: the aux-loss-free bias update of every MoE
  // layer (a collective over EP ranks when experts are distributed).
  absl::Status EndStep();

 private:
  struct Block {
    std::unique_ptr<RmsNorm> norm;
    std::unique_ptr<SwiGlu> ffn;    // dense block
    std::unique_ptr<MoeLayer> moe;  // MoE block
  };
  explicit Model(const ModelConfig& config);

  ModelConfig config_;
  Linear input_proj_;
  std::vector<Block> blocks_;
  RmsNorm final_norm_;
  Linear head_;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_MODEL_H_
