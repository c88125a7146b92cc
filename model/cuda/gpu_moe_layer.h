// -----------------------------------------------------------------------------
// File: gpu_moe_layer.h
// -----------------------------------------------------------------------------
//
// The MoE layer of moe_layer.h on one GPU: the gate GEMM in f32 and the
// router kernel; tokens permuted into per-expert contiguous rows (one host
// round trip for the counts, as any grouped-GEMM MoE needs); grouped expert
// GEMMs (cuBLAS, f32 or bf16 operands with f32 accumulation) and the
// shared expert; the weighted combine in top-k order. Forward returns what
// its backward needs as a Saved (device tensors from the layer's pool), so
// several micro-batches can be in flight; Backward gives dx and either
// accumulates every weight gradient on the device now or defers those GEMMs
// into a WeightGradStore (the I / W split). All work runs on one stream.
//
// Expert parallelism: when model/expert_parallel.h spread the host layer's
// experts, this layer holds the same local slots and moves tokens as the
// host layer does (same replica rule, same per-row top-k sums, same rank-
// order combine), with DispatchGpu / CombineGpu on a device communicator
// of the same EP group; the backward sends dy out again (DispatchCachedGpu)
// and combines dx and the router's weight gradients back.
//
// Not thread-safe: one call at a time (a Stage over it needs
// overlap_threads = false).
//
// Tolerances against the CPU layer (gpu_moe_layer_test): f32 GEMMs 1e-4, bf16
// GEMMs 3e-2, both relative to the largest magnitude of each tensor; the
// expert selection must be identical.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto gpu, GpuMoeLayer::Create(cpu_layer, config, {DType::kBF16}, stream));
//   std::shared_ptr<GpuMoeLayer::Saved> saved;
//   TANDEM_ASSIGN_OR_RETURN(Tensor y, gpu->Forward(x_dev, &saved));
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, gpu->Backward(*saved, dy_dev, /*store=*/nullptr));
#ifndef TANDEM_MODEL_CUDA_GPU_MOE_LAYER_H_
#define TANDEM_MODEL_CUDA_GPU_MOE_LAYER_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "comm/communicator.h"
#include "comm/moe/dispatch.h"
#include "model/config.h"
#include "model/cuda/device.h"
#include "model/cuda/gemm.h"
#include "model/expert_parallel.h"
#include "model/moe_layer.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model::cuda {

struct GpuMoeOptions {
  DType gemm_dtype = DType::kF32;  // expert and shared-expert GEMM operands
  // For layers whose experts are distributed: a device communicator (e.g.
  // cuda_local) over the host layer's EP group, with the same size and rank.
  comm::Communicator* expert_comm = nullptr;
};

class GpuMoeLayer {
 public:
  // GpuMoeLayer::Create()
  //
  // Copies the weights and the balancing bias of `cpu` to the device: all
  // experts, or the local slots of a distributed layer (then
  // options.expert_comm is required). `cpu` must outlive this layer; each
  // Forward() counts its routing there (MoeLayer::CountRouted: the bias
  // update and the load recorder), and Reload() takes its new values.
  // kInvalidArgument for configs the router kernel does not take
  // (experts > 1024, top_k > 16, groups > 64) or a missing or mismatched
  // expert_comm. Tensors come from `pool` (a new pool on `stream` when
  // null).
  static absl::StatusOr<std::unique_ptr<GpuMoeLayer>> Create(MoeLayer& cpu, const ModelConfig& config,
                                                             GpuMoeOptions options, cudaStream_t stream,
                                                             std::shared_ptr<DevicePool> pool = nullptr);

  // What Backward() needs from one Forward(); opaque.
  struct Saved;

  // GpuMoeLayer::Forward()
  //
  // x [T, hidden] f32 on the device -> y; `saved` receives what Backward()
  // needs. With distributed experts, Forward() and Backward() are
  // collective over expert_comm: every EP rank calls them in one order.
  absl::StatusOr<Tensor> Forward(const Tensor& x, std::shared_ptr<Saved>* saved);

  // GpuMoeLayer::Backward()
  //
  // dy [T, hidden] f32 -> dx. The weight-gradient GEMMs run now (store ==
  // nullptr) or are Put() into `store`; a deferred GEMM that fails is
  // reported by DownloadGrads(), and Reload() refuses while any is left.
  absl::StatusOr<Tensor> Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store);

  // The gradients as host tensors, in the order of
  // cpu.dense_parameters() then cpu.expert_parameters() (local slots).
  absl::StatusOr<std::vector<Tensor>> DownloadGrads() const;

  // GpuMoeLayer::Reload()
  //
  // Takes the host layer's current values (after an optimizer step) and
  // local experts and placement (after ApplyPlacement), and zeroes the
  // gradients. No backward or deferred gradient may be pending.
  absl::Status Reload();

  // Expert selection of `saved`'s forward [T, top_k] (host copy).
  static const std::vector<int32_t>& Selection(const Saved& saved);

 private:
  struct Weight {
    Tensor value;  // f32
    Tensor grad;   // f32
    Tensor low;    // bf16 copy when gemm_dtype is bf16
    const void* gemm() const { return low.numel() > 0 && !low.is_host() ? low.raw() : value.raw(); }
  };
  GpuMoeLayer() = default;
  // Copies (or on shape changes allocates) `w` from `host` on the stream
  // and zeroes its gradient.
  absl::Status Assign(Weight& w, const Tensor& host);
  // Reads the host layer: weights, bias, local experts and placement.
  absl::Status Load();
  // Rows [R, width] back to their tokens through comm_, summed in rank
  // order: [T, width].
  absl::StatusOr<Tensor> CombineRows(const comm::moe::Handle& handle, const Tensor& rows, int64_t width);
  // `f32` (n floats) as a GEMM operand in gemm_dtype: itself, or a bf16
  // copy from the pool.
  absl::StatusOr<Tensor> Operand(const Tensor& f32, int64_t n);
  absl::StatusOr<Tensor> Zeros(std::vector<int64_t> shape) { return pool_->Zeros(std::move(shape)); }
  // The weight-gradient GEMMs of one backward.
  absl::Status WeightGrads(const Saved& s, const Tensor& dy_op, const Tensor& dsa_op, const Tensor& dsb_op,
                           const Tensor& dop_op, const Tensor& dap_op, const Tensor& dbp_op, const Tensor& dlogits);

  MoeLayer* cpu_ = nullptr;
  ModelConfig config_;
  GpuMoeOptions options_;
  int slots_ = 0;                       // local experts
  comm::Communicator* comm_ = nullptr;  // set when the experts are distributed
  EpLayout layout_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<DevicePool> pool_;
  std::unique_ptr<Blas> blas_;
  Weight gate_;
  Tensor bias_;            // the balancing bias (not trained)
  Weight shared_[3];       // w1, w2, w3 (absent when no shared expert)
  Weight experts_[3];      // local slots stacked: w1 [S, F, H], w2 [S, H, F], w3 [S, F, H]
  DeferredWork deferred_;  // weight gradients; a failure surfaces in DownloadGrads()
};

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_GPU_MOE_LAYER_H_
