#include "model/cuda/moe_gpu.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "model/cuda/device.h"
#include "model/cuda/kernels.h"

namespace tandem::model::cuda {
namespace {

// Scratch slots: forward values kept for backward, then backward temps.
enum Slot : int {
  kLogits, kScores, kIdx, kWeights, kRows, kEntries, kPos, kXp, kAp, kBp, kHp, kOp,
  kSa, kSb, kSh, kSout,
  kXLow, kXpLow, kHpLow, kShLow,                                    // bf16 operands (forward)
  kDyLow, kDSh, kDSa, kDSb, kDSaLow, kDSbLow, kDxs, kDOp, kDOpLow,  // backward
  kDw, kDHp, kDAp, kDBp, kDApLow, kDBpLow, kDXp, kDLogits,
  kNumSlots
};

// The `which` projection (0 = w1, 1 = w2, 2 = w3) of every expert, stacked
// [E, rows, cols] on the host.
Tensor Stack(const std::vector<Parameter*>& params, int which, int experts) {
  const Tensor& first = params[which]->value;
  Tensor host = Tensor::Zeros({experts, first.dim(0), first.dim(1)});
  for (int e = 0; e < experts; ++e) {
    std::memcpy(host.data<float>() + e * first.numel(), params[3 * e + which]->value.raw(), first.bytes());
  }
  return host;
}

RouterParams MakeRouterParams(const ModelConfig& c) {
  RouterParams rp;
  rp.num_experts = c.num_experts;
  rp.top_k = c.top_k;
  rp.n_group = c.n_group;
  rp.topk_group = c.topk_group;
  rp.sigmoid = c.score_func == ScoreFunc::kSigmoid;
  rp.route_scale = c.route_scale;
  return rp;
}

}  // namespace

GpuMoeLayer::~GpuMoeLayer() {
  for (auto& [p, n] : scratch_) cudaFree(p);
}

absl::StatusOr<void*> GpuMoeLayer::Scratch(int slot, size_t bytes) {
  auto& [p, n] = scratch_[slot];
  if (n < bytes) {
    if (p != nullptr) TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    cudaFree(p);
    p = nullptr;
    n = 0;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
    n = bytes;
  }
  return p;
}

absl::StatusOr<const void*> GpuMoeLayer::Operand(const float* f32, int64_t n, int slot) {
  if (options_.gemm_dtype == DType::kF32) return static_cast<const void*>(f32);
  TANDEM_ASSIGN_OR_RETURN(void* low, Scratch(slot, n * 2));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueF32ToBf16(f32, static_cast<uint16_t*>(low), n, stream_));
  return static_cast<const void*>(low);
}

absl::StatusOr<std::unique_ptr<GpuMoeLayer>> GpuMoeLayer::Create(MoeLayer& cpu, const ModelConfig& config,
                                                                 GpuMoeOptions options, cudaStream_t stream) {
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config));
  if (config.num_experts > 1024 || config.top_k > 16 || config.n_group > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu moe: expected num_experts <= 1024, top_k <= 16, n_group <= 64, got ", config.num_experts, ", ",
        config.top_k, ", ", config.n_group));
  }
  if (static_cast<int>(cpu.slot_expert().size()) != config.num_experts || cpu.exchange() != nullptr) {
    return absl::InvalidArgumentError("gpu moe: expected a single-rank layer holding every expert");
  }
  std::unique_ptr<GpuMoeLayer> g(new GpuMoeLayer());
  g->config_ = config;
  g->options_ = options;
  g->stream_ = stream;
  g->scratch_.assign(kNumSlots, {nullptr, 0});
  TANDEM_ASSIGN_OR_RETURN(g->blas_, Blas::Create(stream));
  auto upload = [&](Weight& w, const Tensor& host) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(w.value, ToDevice(host));
    TANDEM_ASSIGN_OR_RETURN(w.grad, DeviceZeros(host.shape(), DType::kF32));
    if (options.gemm_dtype == DType::kBF16) {
      TANDEM_ASSIGN_OR_RETURN(w.low, ToDevice(host, DType::kBF16));
    }
    return absl::OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(upload(g->gate_, cpu.router().weight().value));
  TANDEM_ASSIGN_OR_RETURN(g->bias_.value, ToDevice(cpu.router().bias()));
  if (cpu.shared() != nullptr) {
    std::vector<Parameter*> s = cpu.shared()->parameters();
    for (int i = 0; i < 3; ++i) TANDEM_RETURN_IF_ERROR(upload(g->shared_[i], s[i]->value));
  }
  std::vector<Parameter*> ex = cpu.expert_parameters();
  for (int i = 0; i < 3; ++i) {
    TANDEM_RETURN_IF_ERROR(upload(g->experts_[i], Stack(ex, i, config.num_experts)));
  }
  return g;
}

absl::StatusOr<Tensor> GpuMoeLayer::Forward(const Tensor& x) {
  const int64_t t = x.rank() == 2 ? x.dim(0) : -1;
  const int64_t h = config_.hidden, e_count = config_.num_experts, k = config_.top_k;
  const int64_t f = config_.moe_inter, fs = int64_t{config_.num_shared_experts} * config_.moe_inter;
  if (x.is_host() || x.dtype() != DType::kF32 || t < 0 || x.dim(1) != h) {
    return absl::InvalidArgumentError(absl::StrCat("gpu moe: input: expected a device f32 [T, ", h, "], got ",
                                                   ShapeString(x.shape())));
  }
  const DType gt = options_.gemm_dtype;
  const float* xp = x.data<float>();
  TANDEM_ASSIGN_OR_RETURN(void* logits, Scratch(kLogits, t * e_count * 4));
  TANDEM_ASSIGN_OR_RETURN(void* scores, Scratch(kScores, t * e_count * 4));
  TANDEM_ASSIGN_OR_RETURN(void* idx, Scratch(kIdx, t * k * 4));
  TANDEM_ASSIGN_OR_RETURN(void* weights, Scratch(kWeights, t * k * 4));
  TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, true, t, e_count, h}, xp, DType::kF32, gate_.value.raw(),
                                     static_cast<float*>(logits), 1.0f, 0.0f));
  const RouterParams rp = MakeRouterParams(config_);
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRouterForward(static_cast<float*>(logits), bias_.value.data<float>(), rp, t,
                                                   static_cast<float*>(scores), static_cast<int32_t*>(idx),
                                                   static_cast<float*>(weights), stream_));
  // Permutation: rows of expert e are entries (t, j) with idx == e, tokens
  // ascending, at offsets_[e] .. offsets_[e + 1].
  idx_host_.resize(t * k);
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(idx_host_.data(), idx, t * k * 4, cudaMemcpyDeviceToHost, stream_));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  offsets_.assign(e_count + 1, 0);
  for (int32_t e : idx_host_) ++offsets_[e + 1];
  for (int64_t e = 0; e < e_count; ++e) offsets_[e + 1] += offsets_[e];
  const int64_t n = t * k;
  std::vector<int32_t> rows(n), entries(n), pos(n);
  std::vector<int64_t> fill(offsets_.begin(), offsets_.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t at = fill[idx_host_[i]]++;
    rows[at] = static_cast<int32_t>(i / k);
    entries[at] = static_cast<int32_t>(i);
    pos[i] = static_cast<int32_t>(at);
  }
  TANDEM_ASSIGN_OR_RETURN(void* rows_d, Scratch(kRows, n * 4));
  TANDEM_ASSIGN_OR_RETURN(void* entries_d, Scratch(kEntries, n * 4));
  TANDEM_ASSIGN_OR_RETURN(void* pos_d, Scratch(kPos, n * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(rows_d, rows.data(), n * 4, cudaMemcpyHostToDevice, stream_));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(entries_d, entries.data(), n * 4, cudaMemcpyHostToDevice, stream_));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pos_d, pos.data(), n * 4, cudaMemcpyHostToDevice, stream_));
  TANDEM_ASSIGN_OR_RETURN(void* xperm, Scratch(kXp, n * h * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueGatherRows(xp, static_cast<int32_t*>(rows_d), nullptr, nullptr, n, h,
                                                static_cast<float*>(xperm), stream_));
  TANDEM_ASSIGN_OR_RETURN(const void* xperm_op, Operand(static_cast<float*>(xperm), n * h, kXpLow));
  TANDEM_ASSIGN_OR_RETURN(void* ap, Scratch(kAp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* bp, Scratch(kBp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* hp, Scratch(kHp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* op, Scratch(kOp, n * h * 4));
  const int64_t es = SizeOf(gt);
  auto expert_w = [&](int which, int64_t e) {
    return static_cast<const char*>(experts_[which].gemm()) + e * experts_[which].value.dim(1) *
                                                                  experts_[which].value.dim(2) * es;
  };
  std::vector<GemmGroup> g1, g3;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t o = offsets_[e], m = offsets_[e + 1] - offsets_[e];
    const char* a = static_cast<const char*>(xperm_op) + o * h * es;
    g1.push_back({{false, true, m, f, h}, a, expert_w(0, e), static_cast<float*>(ap) + o * f});
    g3.push_back({{false, true, m, f, h}, a, expert_w(2, e), static_cast<float*>(bp) + o * f});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g1, gt, 1.0f, 0.0f));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g3, gt, 1.0f, 0.0f));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluForward(static_cast<float*>(ap), static_cast<float*>(bp),
                                                   static_cast<float*>(hp), n * f, stream_));
  TANDEM_ASSIGN_OR_RETURN(const void* hp_op, Operand(static_cast<float*>(hp), n * f, kHpLow));
  std::vector<GemmGroup> g2;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t o = offsets_[e], m = offsets_[e + 1] - offsets_[e];
    g2.push_back({{false, true, m, h, f}, static_cast<const char*>(hp_op) + o * f * es, expert_w(1, e),
                  static_cast<float*>(op) + o * h});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g2, gt, 1.0f, 0.0f));
  const float* base = nullptr;
  if (fs > 0) {
    TANDEM_ASSIGN_OR_RETURN(const void* x_op, Operand(xp, t * h, kXLow));
    TANDEM_ASSIGN_OR_RETURN(void* sa, Scratch(kSa, t * fs * 4));
    TANDEM_ASSIGN_OR_RETURN(void* sb, Scratch(kSb, t * fs * 4));
    TANDEM_ASSIGN_OR_RETURN(void* sh, Scratch(kSh, t * fs * 4));
    TANDEM_ASSIGN_OR_RETURN(void* so, Scratch(kSout, t * h * 4));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, true, t, fs, h}, x_op, gt, shared_[0].gemm(), static_cast<float*>(sa), 1, 0));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, true, t, fs, h}, x_op, gt, shared_[2].gemm(), static_cast<float*>(sb), 1, 0));
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluForward(static_cast<float*>(sa), static_cast<float*>(sb),
                                                     static_cast<float*>(sh), t * fs, stream_));
    TANDEM_ASSIGN_OR_RETURN(const void* sh_op, Operand(static_cast<float*>(sh), t * fs, kShLow));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, true, t, h, fs}, sh_op, gt, shared_[1].gemm(), static_cast<float*>(so), 1, 0));
    base = static_cast<float*>(so);
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor y, DeviceZeros({t, h}, DType::kF32));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueCombine(static_cast<float*>(op), static_cast<int32_t*>(pos_d),
                                             static_cast<float*>(weights), base, t, static_cast<int>(k), h,
                                             y.data<float>(), stream_));
  x_ = x;
  tokens_ = t;
  have_forward_ = true;
  return y;
}

absl::StatusOr<Tensor> GpuMoeLayer::Backward(const Tensor& dy) {
  if (!have_forward_) return absl::FailedPreconditionError("gpu moe: backward: no saved forward");
  const int64_t t = tokens_;
  const int64_t h = config_.hidden, e_count = config_.num_experts, k = config_.top_k;
  const int64_t f = config_.moe_inter, fs = int64_t{config_.num_shared_experts} * config_.moe_inter;
  if (dy.is_host() || dy.dtype() != DType::kF32 || dy.rank() != 2 || dy.dim(0) != t || dy.dim(1) != h) {
    return absl::InvalidArgumentError(absl::StrCat("gpu moe: output gradient: expected a device f32 [", t, ", ", h,
                                                   "], got ", ShapeString(dy.shape())));
  }
  have_forward_ = false;
  const DType gt = options_.gemm_dtype;
  const int64_t es = SizeOf(gt);
  const int64_t n = t * k;
  const float* dyp = dy.data<float>();
  const float* xp = x_.data<float>();
  auto slot = [&](int s) { return static_cast<float*>(scratch_[s].first); };
  TANDEM_ASSIGN_OR_RETURN(const void* dy_op, Operand(dyp, t * h, kDyLow));
  // Shared expert.
  TANDEM_ASSIGN_OR_RETURN(void* dxs, Scratch(kDxs, t * h * 4));
  if (fs > 0) {
    TANDEM_ASSIGN_OR_RETURN(void* dsh, Scratch(kDSh, t * fs * 4));
    TANDEM_ASSIGN_OR_RETURN(void* dsa, Scratch(kDSa, t * fs * 4));
    TANDEM_ASSIGN_OR_RETURN(void* dsb, Scratch(kDSb, t * fs * 4));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, false, t, fs, h}, dy_op, gt, shared_[1].gemm(), static_cast<float*>(dsh), 1, 0));
    const void* sh_op = gt == DType::kF32 ? static_cast<const void*>(slot(kSh)) : scratch_[kShLow].first;
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({true, false, h, fs, t}, dy_op, gt, sh_op, shared_[1].grad.data<float>(), 1, 1));
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluBackward(slot(kSa), slot(kSb), static_cast<float*>(dsh),
                                                      static_cast<float*>(dsa), static_cast<float*>(dsb), t * fs, stream_));
    TANDEM_ASSIGN_OR_RETURN(const void* dsa_op, Operand(static_cast<float*>(dsa), t * fs, kDSaLow));
    TANDEM_ASSIGN_OR_RETURN(const void* dsb_op, Operand(static_cast<float*>(dsb), t * fs, kDSbLow));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, false, t, h, fs}, dsa_op, gt, shared_[0].gemm(), static_cast<float*>(dxs), 1, 0));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, false, t, h, fs}, dsb_op, gt, shared_[2].gemm(), static_cast<float*>(dxs), 1, 1));
    const void* x_op = gt == DType::kF32 ? static_cast<const void*>(xp) : scratch_[kXLow].first;
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({true, false, fs, h, t}, dsa_op, gt, x_op, shared_[0].grad.data<float>(), 1, 1));
    TANDEM_RETURN_IF_ERROR(blas_->Gemm({true, false, fs, h, t}, dsb_op, gt, x_op, shared_[2].grad.data<float>(), 1, 1));
  }
  // Routed experts.
  TANDEM_ASSIGN_OR_RETURN(void* dop, Scratch(kDOp, n * h * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueGatherRows(dyp, static_cast<int32_t*>(scratch_[kRows].first), slot(kWeights),
                                                static_cast<int32_t*>(scratch_[kEntries].first), n, h,
                                                static_cast<float*>(dop), stream_));
  TANDEM_ASSIGN_OR_RETURN(void* dw, Scratch(kDw, n * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRowDots(dyp, slot(kOp), static_cast<int32_t*>(scratch_[kPos].first), t,
                                             static_cast<int>(k), h, static_cast<float*>(dw), stream_));
  TANDEM_ASSIGN_OR_RETURN(const void* dop_op, Operand(static_cast<float*>(dop), n * h, kDOpLow));
  TANDEM_ASSIGN_OR_RETURN(void* dhp, Scratch(kDHp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* dap, Scratch(kDAp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* dbp, Scratch(kDBp, n * f * 4));
  TANDEM_ASSIGN_OR_RETURN(void* dxp, Scratch(kDXp, n * h * 4));
  const void* hp_op = gt == DType::kF32 ? static_cast<const void*>(slot(kHp)) : scratch_[kHpLow].first;
  const void* xperm_op = gt == DType::kF32 ? static_cast<const void*>(slot(kXp)) : scratch_[kXpLow].first;
  auto wmat = [&](int which, int64_t e) {
    return static_cast<const char*>(experts_[which].gemm()) +
           e * experts_[which].value.dim(1) * experts_[which].value.dim(2) * es;
  };
  auto gmat = [&](int which, int64_t e) {
    return experts_[which].grad.data<float>() + e * experts_[which].value.dim(1) * experts_[which].value.dim(2);
  };
  std::vector<GemmGroup> d_h, d_w2;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t o = offsets_[e], m = offsets_[e + 1] - offsets_[e];
    const char* dope = static_cast<const char*>(dop_op) + o * h * es;
    d_h.push_back({{false, false, m, f, h}, dope, wmat(1, e), static_cast<float*>(dhp) + o * f});
    d_w2.push_back({{true, false, h, f, m}, dope, static_cast<const char*>(hp_op) + o * f * es, gmat(1, e)});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(d_h, gt, 1, 0));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(d_w2, gt, 1, 1));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluBackward(slot(kAp), slot(kBp), static_cast<float*>(dhp),
                                                    static_cast<float*>(dap), static_cast<float*>(dbp), n * f, stream_));
  TANDEM_ASSIGN_OR_RETURN(const void* dap_op, Operand(static_cast<float*>(dap), n * f, kDApLow));
  TANDEM_ASSIGN_OR_RETURN(const void* dbp_op, Operand(static_cast<float*>(dbp), n * f, kDBpLow));
  std::vector<GemmGroup> dx1, dx3, dw1, dw3;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t o = offsets_[e], m = offsets_[e + 1] - offsets_[e];
    const char* da = static_cast<const char*>(dap_op) + o * f * es;
    const char* db = static_cast<const char*>(dbp_op) + o * f * es;
    const char* xe = static_cast<const char*>(xperm_op) + o * h * es;
    dx1.push_back({{false, false, m, h, f}, da, wmat(0, e), static_cast<float*>(dxp) + o * h});
    dx3.push_back({{false, false, m, h, f}, db, wmat(2, e), static_cast<float*>(dxp) + o * h});
    dw1.push_back({{true, false, f, h, m}, da, xe, gmat(0, e)});
    dw3.push_back({{true, false, f, h, m}, db, xe, gmat(2, e)});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dx1, gt, 1, 0));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dx3, gt, 1, 1));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dw1, gt, 1, 1));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dw3, gt, 1, 1));
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, DeviceZeros({t, h}, DType::kF32));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueCombine(static_cast<float*>(dxp), static_cast<int32_t*>(scratch_[kPos].first),
                                             nullptr, fs > 0 ? static_cast<float*>(dxs) : nullptr, t,
                                             static_cast<int>(k), h, dx.data<float>(), stream_));
  // Router.
  const RouterParams rp = MakeRouterParams(config_);
  TANDEM_ASSIGN_OR_RETURN(void* dlogits, Scratch(kDLogits, t * e_count * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRouterBackward(slot(kScores), static_cast<int32_t*>(scratch_[kIdx].first),
                                                    static_cast<float*>(dw), rp, t, static_cast<float*>(dlogits), stream_));
  TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, false, t, h, e_count}, dlogits, DType::kF32, gate_.value.raw(),
                                     dx.data<float>(), 1, 1));
  TANDEM_RETURN_IF_ERROR(blas_->Gemm({true, false, e_count, h, t}, dlogits, DType::kF32, xp,
                                     gate_.grad.data<float>(), 1, 1));
  return dx;
}

absl::StatusOr<std::vector<Tensor>> GpuMoeLayer::DownloadGrads() const {
  std::vector<Tensor> out;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  TANDEM_ASSIGN_OR_RETURN(Tensor gate, ToHost(gate_.grad));
  out.push_back(gate);
  if (config_.num_shared_experts > 0) {
    for (int i = 0; i < 3; ++i) {
      TANDEM_ASSIGN_OR_RETURN(Tensor s, ToHost(shared_[i].grad));
      out.push_back(s);
    }
  }
  std::vector<Tensor> stacked(3);
  for (int i = 0; i < 3; ++i) {
    TANDEM_ASSIGN_OR_RETURN(stacked[i], ToHost(experts_[i].grad));
  }
  for (int64_t e = 0; e < config_.num_experts; ++e) {
    for (int i = 0; i < 3; ++i) {
      Tensor one = Tensor::Zeros({stacked[i].dim(1), stacked[i].dim(2)});
      std::memcpy(one.raw(), stacked[i].data<float>() + e * one.numel(), one.bytes());
      out.push_back(one);
    }
  }
  return out;
}

}  // namespace tandem::model::cuda
