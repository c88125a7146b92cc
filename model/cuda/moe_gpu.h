// -----------------------------------------------------------------------------
// File: moe_gpu.h
// -----------------------------------------------------------------------------
//
// The MoE layer of moe_layer.h on one GPU: the gate GEMM in f32 and the
// router kernel; tokens permuted into per-expert contiguous rows (one host
// round trip for the counts, as any grouped-GEMM MoE needs); grouped expert
// GEMMs (cuBLAS, f32 or bf16 operands with f32 accumulation) and the
// shared expert; the weighted combine in top-k order. Backward gives dx and
// accumulates every weight gradient on the device (no deferral).
//
// Tolerances against the CPU layer (moe_gpu_test): f32 GEMMs 1e-4, bf16
// GEMMs 3e-2, both relative to the largest magnitude of each tensor; the
// expert selection must be identical.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto gpu, GpuMoeLayer::Create(cpu_layer, config, {DType::kBF16}, stream));
//   TANDEM_ASSIGN_OR_RETURN(Tensor y, gpu->Forward(x_dev));
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, gpu->Backward(dy_dev));
#ifndef TANDEM_MODEL_CUDA_MOE_GPU_H_
#define TANDEM_MODEL_CUDA_MOE_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/cuda/gemm.h"
#include "model/moe_layer.h"
#include "model/tensor.h"

namespace tandem::model::cuda {

struct GpuMoeOptions {
  DType gemm_dtype = DType::kF32;  // expert and shared-expert GEMM operands
};

class GpuMoeLayer {
 public:
  // GpuMoeLayer::Create()
  //
  // Copies the weights and the balancing bias of `cpu` (which must hold all
  // experts: single rank) to the device. kInvalidArgument for configs the
  // router kernel does not take (experts > 1024, top_k > 16, groups > 64).
  static absl::StatusOr<std::unique_ptr<GpuMoeLayer>> Create(MoeLayer& cpu, const ModelConfig& config,
                                                             GpuMoeOptions options, cudaStream_t stream);
  ~GpuMoeLayer();

  // GpuMoeLayer::Forward()
  //
  // x [T, hidden] f32 on the device -> y; saves what one Backward() needs.
  absl::StatusOr<Tensor> Forward(const Tensor& x);

  // GpuMoeLayer::Backward()
  //
  // dy [T, hidden] f32 -> dx; weight gradients accumulate on the device.
  // kFailedPrecondition without a preceding Forward().
  absl::StatusOr<Tensor> Backward(const Tensor& dy);

  // The gradients as host tensors, in the order of
  // cpu.dense_parameters() then cpu.expert_parameters().
  absl::StatusOr<std::vector<Tensor>> DownloadGrads() const;

  // Expert selection of the last Forward() [T, top_k] (host copy).
  const std::vector<int32_t>& last_idx() const { return idx_host_; }

 private:
  GpuMoeLayer() = default;
  // A reusable device buffer for slot `slot` of at least `bytes` bytes.
  absl::StatusOr<void*> Scratch(int slot, size_t bytes);
  // `f32` as a GEMM operand in gemm_dtype (converted into slot when bf16).
  absl::StatusOr<const void*> Operand(const float* f32, int64_t n, int slot);

  struct Weight {
    Tensor value;  // f32
    Tensor grad;   // f32
    Tensor low;    // bf16 copy when gemm_dtype is bf16
    const void* gemm() const { return low.numel() > 0 && !low.is_host() ? low.raw() : value.raw(); }
  };
  ModelConfig config_;
  GpuMoeOptions options_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Blas> blas_;
  Weight gate_, bias_;
  Weight shared_[3];   // w1, w2, w3 (absent when no shared expert)
  Weight experts_[3];  // stacked: w1 [E, F, H], w2 [E, H, F], w3 [E, F, H]
  std::vector<std::pair<void*, size_t>> scratch_;
  // Saved by Forward().
  bool have_forward_ = false;
  Tensor x_;
  int64_t tokens_ = 0;
  std::vector<int32_t> idx_host_;
  std::vector<int64_t> offsets_;  // per expert, E + 1
};

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_MOE_GPU_H_
