// -----------------------------------------------------------------------------
// File: gpu_model.h
// -----------------------------------------------------------------------------
//
// The reference model (model.h) on one GPU, behind the same UnitModel
// interface, so a pipeline Stage runs it unchanged: input projection, blocks
// (RMSNorm, dense SwiGLU or the MoE layer of gpu_moe_layer.h, residual) and head,
// with f32 activations in device memory. A backward with a WeightGradStore
// defers every weight-gradient GEMM (and the RMSNorm weight gradients) into
// it as closures that enqueue the work when popped: the I / W split of the
// zero-bubble schedules. Each call's saved forward lives in its UnitState,
// so any number of micro-batches may be in flight. All work runs on one
// stream in call order; tensors come from a DevicePool on that stream.
// The loss is computed on the host (loss.h) from the downloaded head
// output; its gradient goes back to the device.
//
// Gradients accumulate on the device; SyncGradients() writes them into the
// host model's Parameters (the host model is the one Create() copied, and
// must outlive this one). Training steps the host optimizer, then
// ReloadParameters() copies the new values in and zeroes the gradients.
// MoE layers whose experts expert_parallel.h distributed move their tokens
// through GpuMoeOptions::expert_comm (gpu_moe_layer.h).
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> host, Model::Create(config));
//   TANDEM_ASSIGN_OR_RETURN(auto gpu, GpuModel::Create(*host, stream));
//   TANDEM_ASSIGN_OR_RETURN(auto stage, Stage::Create(gpu.get(), 0, gpu->num_units(), {}));
#ifndef TANDEM_MODEL_CUDA_GPU_MODEL_H_
#define TANDEM_MODEL_CUDA_GPU_MODEL_H_

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/cuda/device.h"
#include "model/cuda/gemm.h"
#include "model/cuda/gpu_moe_layer.h"
#include "model/model.h"

namespace tandem::model::cuda {

class GpuModel : public UnitModel {
 public:
  // GpuModel::Create()
  //
  // Copies every parameter of `host` to the device (f32). Distributed MoE
  // layers need options.expert_comm (GpuMoeLayer::Create()).
  static absl::StatusOr<std::unique_ptr<GpuModel>> Create(Model& host, cudaStream_t stream, GpuMoeOptions options = {});

  const ModelConfig& config() const override { return host_.config(); }
  // The first unit also takes a host input and copies it to the device.
  absl::StatusOr<Tensor> UnitForward(int unit, const Tensor& x, std::unique_ptr<UnitState>* state) override;
  absl::StatusOr<Tensor> UnitBackward(int unit, const UnitState& state, const Tensor& dy,
                                      WeightGradStore* store) override;
  absl::StatusOr<LossResult> Loss(const Tensor& out, const Target& target) override;
  absl::StatusOr<Tensor> NewActivation(std::vector<int64_t> shape) override { return pool_->Zeros(std::move(shape)); }
  absl::Status SyncGradients() override;
  absl::Status ReloadParameters() override;

 private:
  // A parameter on the device: value, gradient, and the host Parameter.
  struct Weight {
    Parameter* host = nullptr;
    Tensor value, grad;
  };
  struct Block {
    Weight norm;
    Weight ffn[3];  // dense: w1 [I, H], w2 [H, I], w3 [I, H]
    std::unique_ptr<GpuMoeLayer> moe;
  };
  explicit GpuModel(Model& host) : host_(host) {}
  absl::StatusOr<Weight> Upload(Parameter* p);
  // Copies w.host's value in on the stream and zeroes the gradient.
  absl::Status Reload(Weight& w);

  // y = x W^T, dx = dy W, dW += dy^T x for x [T, in], W [out, in].
  absl::StatusOr<Tensor> Linear(const Weight& w, const Tensor& x);
  absl::StatusOr<Tensor> LinearBackward(const Weight& w, const Tensor& x, const Tensor& dy, WeightGradStore* store);
  // RMSNorm forward (saving the inverse RMS r) and backward.
  absl::StatusOr<Tensor> Norm(const Weight& g, const Tensor& x, Tensor* r);
  absl::StatusOr<Tensor> NormBackward(const Weight& g, const Tensor& x, const Tensor& r, const Tensor& dy,
                                      WeightGradStore* store);

  Model& host_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<DevicePool> pool_;
  std::unique_ptr<Blas> blas_;
  Weight input_proj_, final_norm_, head_;
  std::vector<Block> blocks_;
  DeferredWork deferred_;  // dense weight gradients; a failure surfaces in SyncGradients()
};

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_GPU_MODEL_H_
