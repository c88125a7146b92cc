#include "model/cuda/gpu_moe_layer.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/deadline.h"
#include "base/status_macros.h"
#include "comm/moe/dispatch_gpu.h"
#include "model/cuda/device.h"
#include "model/cuda/layer_kernels.h"

namespace tandem::model::cuda {
namespace {

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

// Forward values Backward() needs, for one call.
struct GpuMoeLayer::Saved {
  int64_t tokens = 0;
  std::vector<int32_t> idx_host;  // [T, top_k]
  std::vector<int64_t> offsets;   // per local slot, S + 1
  Tensor x, x_op;                 // input and its GEMM operand
  Tensor scores, idx, weights;    // router [T, E], [T, k] (idx int32)
  // What the local experts see: rows [R, H] (the tokens themselves, or the
  // dispatched rows) and per (row, k) the weight (0 elsewhere).
  int64_t num_rows = 0;
  Tensor rows_x, row_weights;
  comm::moe::Handle handle;   // with expert parallelism
  Tensor rows, entries, pos;  // permutation (int32): entry -> row, entry, (row, k) -> entry or -1
  Tensor xperm_op, ap, bp, hp_op, op;
  Tensor sa, sb, sh_op;  // shared expert
};

const std::vector<int32_t>& GpuMoeLayer::Selection(const Saved& saved) { return saved.idx_host; }

absl::StatusOr<Tensor> GpuMoeLayer::Operand(const Tensor& f32, int64_t n) {
  if (options_.gemm_dtype == DType::kF32) return f32;
  TANDEM_ASSIGN_OR_RETURN(Tensor low, pool_->Zeros({n}, DType::kBF16));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueF32ToBf16(f32.data<float>(), low.data<uint16_t>(), n, stream_));
  return low;
}

absl::StatusOr<std::unique_ptr<GpuMoeLayer>> GpuMoeLayer::Create(MoeLayer& cpu, const ModelConfig& config,
                                                                 GpuMoeOptions options, cudaStream_t stream,
                                                                 std::shared_ptr<DevicePool> pool) {
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config));
  if (config.num_experts > 1024 || config.top_k > 16 || config.n_group > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu moe: expected num_experts <= 1024, top_k <= 16, n_group <= 64, got ", config.num_experts,
                     ", ", config.top_k, ", ", config.n_group));
  }
  std::unique_ptr<GpuMoeLayer> g(new GpuMoeLayer());
  g->cpu_ = &cpu;
  g->config_ = config;
  g->options_ = options;
  g->stream_ = stream;
  g->pool_ = pool != nullptr ? std::move(pool) : DevicePool::Create(stream);
  TANDEM_ASSIGN_OR_RETURN(g->blas_, Blas::Create(stream));
  TANDEM_RETURN_IF_ERROR(g->Load());
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return g;
}

absl::Status GpuMoeLayer::Assign(Weight& w, const Tensor& host) {
  if (w.value.shape() != host.shape()) {
    TANDEM_ASSIGN_OR_RETURN(w.value, pool_->Zeros(host.shape()));
    TANDEM_ASSIGN_OR_RETURN(w.grad, pool_->Zeros(host.shape()));
    if (options_.gemm_dtype == DType::kBF16) {
      TANDEM_ASSIGN_OR_RETURN(w.low, pool_->Zeros(host.shape(), DType::kBF16));
    }
  } else {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.grad.raw(), 0, w.grad.bytes(), stream_));
  }
  // From pageable memory: returns once `host` has been staged.
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(w.value.raw(), host.raw(), host.bytes(), cudaMemcpyHostToDevice, stream_));
  if (w.low.numel() > 0) {
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueF32ToBf16(w.value.data<float>(), w.low.data<uint16_t>(), host.numel(), stream_));
  }
  return absl::OkStatus();
}

absl::Status GpuMoeLayer::Load() {
  MoeLayer& cpu = *cpu_;
  const EpLayout* layout = EpLayoutOf(cpu);
  comm::Communicator* c = options_.expert_comm;
  if (layout == nullptr) {
    if (static_cast<int>(cpu.slot_expert().size()) != config_.num_experts || cpu.exchange() != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(cpu.name(), ": gpu moe: expected every expert local or distributed by DistributeExperts, got ",
                       cpu.slot_expert().size(), " local slots of ", config_.num_experts, " experts"));
    }
    comm_ = nullptr;
  } else {
    if (c == nullptr || c->size() != layout->ranks || c->rank() != layout->rank) {
      return absl::InvalidArgumentError(
          absl::StrCat(cpu.name(), ": gpu moe: the experts are distributed over ", layout->ranks,
                       " ranks (this is rank ", layout->rank, "): expected an expert_comm of that size and rank, got ",
                       c == nullptr ? "none" : absl::StrCat("size ", c->size(), " rank ", c->rank())));
    }
    layout_ = *layout;
    comm_ = c;
  }
  slots_ = static_cast<int>(cpu.slot_expert().size());
  TANDEM_RETURN_IF_ERROR(Assign(gate_, cpu.router().weight().value));
  TANDEM_ASSIGN_OR_RETURN(bias_, pool_->Copy(cpu.router().bias().shape(), cpu.router().bias().raw()));
  if (cpu.shared() != nullptr) {
    std::vector<Parameter*> sh = cpu.shared()->parameters();
    for (int i = 0; i < 3; ++i) TANDEM_RETURN_IF_ERROR(Assign(shared_[i], sh[i]->value));
  }
  std::vector<Parameter*> ex = cpu.expert_parameters();
  for (int i = 0; i < 3; ++i) TANDEM_RETURN_IF_ERROR(Assign(experts_[i], Stack(ex, i, slots_)));
  return absl::OkStatus();
}

absl::Status GpuMoeLayer::Reload() {
  TANDEM_RETURN_IF_ERROR(deferred_.CheckIdle(absl::StrCat(cpu_->name(), ": reload")));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  TANDEM_RETURN_IF_ERROR(Load());
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the staged host copies are done
  return absl::OkStatus();
}

absl::StatusOr<Tensor> GpuMoeLayer::Forward(const Tensor& x, std::shared_ptr<Saved>* saved) {
  const int64_t t = x.rank() == 2 ? x.dim(0) : -1;
  const int64_t h = config_.hidden, e_count = config_.num_experts, k = config_.top_k;
  const int64_t f = config_.moe_inter, fs = int64_t{config_.num_shared_experts} * config_.moe_inter;
  if (x.is_host() || x.dtype() != DType::kF32 || t < 0 || x.dim(1) != h) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu moe: input: expected a device f32 [T, ", h, "], got ", ShapeString(x.shape())));
  }
  auto s = std::make_shared<Saved>();
  s->tokens = t;
  s->x = x;
  const DType gt = options_.gemm_dtype;
  const int64_t es = SizeOf(gt);
  TANDEM_ASSIGN_OR_RETURN(Tensor logits, Zeros({t, e_count}));
  TANDEM_ASSIGN_OR_RETURN(s->scores, Zeros({t, e_count}));
  TANDEM_ASSIGN_OR_RETURN(s->idx, Zeros({t, k}));
  TANDEM_ASSIGN_OR_RETURN(s->weights, Zeros({t, k}));
  TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, true, t, e_count, h}, x.raw(), DType::kF32, gate_.value.raw(),
                                     logits.data<float>(), 1.0f, 0.0f));
  const RouterParams rp = MakeRouterParams(config_);
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRouterForward(logits.data<float>(), bias_.data<float>(), rp, t,
                                                   s->scores.data<float>(), s->idx.data<int32_t>(),
                                                   s->weights.data<float>(), stream_));
  // Expert selection and weights to the host (one round trip, as any
  // grouped-GEMM MoE needs for the counts).
  const int64_t n_all = t * k;
  s->idx_host.resize(n_all);
  std::vector<float> w_host(comm_ != nullptr ? n_all : 0);
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(s->idx_host.data(), s->idx.raw(), n_all * 4, cudaMemcpyDeviceToHost, stream_));
  if (comm_ != nullptr) {
    TANDEM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(w_host.data(), s->weights.raw(), n_all * 4, cudaMemcpyDeviceToHost, stream_));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  TANDEM_RETURN_IF_ERROR(cpu_->CountRouted(s->idx_host));  // bias-update counts and loads, on the host layer
  // The rows the local experts see, and per (row, k) the local slot.
  std::vector<int32_t> local;
  if (comm_ == nullptr) {
    s->num_rows = t;
    s->rows_x = x;
    s->row_weights = s->weights;
    local = s->idx_host;
  } else {
    const std::vector<int64_t> slots = layout_.SlotsOf(s->idx_host, static_cast<int>(k));
    const comm::moe::Routing routing{static_cast<int>(t), static_cast<int>(k), layout_.num_slots, slots, w_host};
    TANDEM_ASSIGN_OR_RETURN(comm::moe::DispatchedGpu d,
                            comm::moe::DispatchGpu(*comm_, x.raw(), comm::DataType::kF32, static_cast<int>(h), routing,
                                                   {}, stream_, Deadline::In(layout_.timeout)));
    s->num_rows = d.num_rows;
    s->rows_x = Tensor::FromStorage({d.num_rows, h}, DType::kF32, Device::kCuda, d.x.ptr);
    TANDEM_ASSIGN_OR_RETURN(s->row_weights, pool_->Copy({d.num_rows, k}, d.weights.data()));
    local = std::move(d.local_expert);
    s->handle = std::move(d.handle);
  }
  // Permutation: entries (row, j) served by local slot e, rows ascending, at
  // offsets[e] .. offsets[e + 1]; pos[(row, j)] is -1 for other ranks' slots.
  const int64_t r_count = s->num_rows;
  std::vector<int64_t>& offsets = s->offsets;
  offsets.assign(slots_ + 1, 0);
  for (int32_t e : local) {
    if (e >= slots_) return absl::InternalError(absl::StrCat("gpu moe: local slot ", e, " of ", slots_));
    if (e >= 0) ++offsets[e + 1];
  }
  for (int64_t e = 0; e < slots_; ++e) offsets[e + 1] += offsets[e];
  const int64_t n = offsets[slots_];
  std::vector<int32_t> rows(n), entries(n), pos(r_count * k, -1);
  std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < r_count * k; ++i) {
    if (local[i] < 0) continue;
    const int64_t at = fill[local[i]]++;
    rows[at] = static_cast<int32_t>(i / k);
    entries[at] = static_cast<int32_t>(i);
    pos[i] = static_cast<int32_t>(at);
  }
  // int32 in f32-sized tensors; the host vectors may go once staged.
  TANDEM_ASSIGN_OR_RETURN(s->rows, pool_->Copy({n}, rows.data()));
  TANDEM_ASSIGN_OR_RETURN(s->entries, pool_->Copy({n}, entries.data()));
  TANDEM_ASSIGN_OR_RETURN(s->pos, pool_->Copy({r_count * k}, pos.data()));
  TANDEM_ASSIGN_OR_RETURN(Tensor xperm, Zeros({n, h}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueGatherRows(s->rows_x.data<float>(), s->rows.data<int32_t>(), nullptr, nullptr, n,
                                                h, xperm.data<float>(), stream_));
  TANDEM_ASSIGN_OR_RETURN(s->xperm_op, Operand(xperm, n * h));
  TANDEM_ASSIGN_OR_RETURN(s->ap, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(s->bp, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(Tensor hp, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(s->op, Zeros({n, h}));
  auto expert_w = [&](int which, int64_t e) {
    return static_cast<const char*>(experts_[which].gemm()) +
           e * experts_[which].value.dim(1) * experts_[which].value.dim(2) * es;
  };
  std::vector<GemmGroup> g1, g3;
  for (int64_t e = 0; e < slots_; ++e) {
    const int64_t o = offsets[e], m = offsets[e + 1] - offsets[e];
    const char* a = static_cast<const char*>(s->xperm_op.raw()) + o * h * es;
    g1.push_back({{false, true, m, f, h}, a, expert_w(0, e), s->ap.data<float>() + o * f});
    g3.push_back({{false, true, m, f, h}, a, expert_w(2, e), s->bp.data<float>() + o * f});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g1, gt, 1.0f, 0.0f));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g3, gt, 1.0f, 0.0f));
  TANDEM_CUDA_RETURN_IF_ERROR(
      EnqueueSwiGluForward(s->ap.data<float>(), s->bp.data<float>(), hp.data<float>(), n * f, stream_));
  TANDEM_ASSIGN_OR_RETURN(s->hp_op, Operand(hp, n * f));
  std::vector<GemmGroup> g2;
  for (int64_t e = 0; e < slots_; ++e) {
    const int64_t o = offsets[e], m = offsets[e + 1] - offsets[e];
    g2.push_back({{false, true, m, h, f},
                  static_cast<const char*>(s->hp_op.raw()) + o * f * es,
                  expert_w(1, e),
                  s->op.data<float>() + o * h});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(g2, gt, 1.0f, 0.0f));
  Tensor so;
  if (fs > 0) {
    TANDEM_ASSIGN_OR_RETURN(s->x_op, Operand(x, t * h));
    TANDEM_ASSIGN_OR_RETURN(s->sa, Zeros({t, fs}));
    TANDEM_ASSIGN_OR_RETURN(s->sb, Zeros({t, fs}));
    TANDEM_ASSIGN_OR_RETURN(Tensor sh, Zeros({t, fs}));
    TANDEM_ASSIGN_OR_RETURN(so, Zeros({t, h}));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, true, t, fs, h}, s->x_op.raw(), gt, shared_[0].gemm(), s->sa.data<float>(), 1, 0));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, true, t, fs, h}, s->x_op.raw(), gt, shared_[2].gemm(), s->sb.data<float>(), 1, 0));
    TANDEM_CUDA_RETURN_IF_ERROR(
        EnqueueSwiGluForward(s->sa.data<float>(), s->sb.data<float>(), sh.data<float>(), t * fs, stream_));
    TANDEM_ASSIGN_OR_RETURN(s->sh_op, Operand(sh, t * fs));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, true, t, h, fs}, s->sh_op.raw(), gt, shared_[1].gemm(), so.data<float>(), 1, 0));
  }
  // Per row, the weighted outputs of its local experts in top-k order; with
  // expert parallelism the rows go back to their tokens (summed in rank
  // order), then the shared expert's output is added, as in the host layer.
  TANDEM_ASSIGN_OR_RETURN(Tensor y_rows, Zeros({r_count, h}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueCombine(s->op.data<float>(), s->pos.data<int32_t>(), s->row_weights.data<float>(),
                                             fs > 0 && comm_ == nullptr ? so.data<float>() : nullptr, r_count,
                                             static_cast<int>(k), h, y_rows.data<float>(), stream_));
  if (comm_ == nullptr) {
    *saved = std::move(s);
    return y_rows;
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor y, CombineRows(s->handle, y_rows, h));
  if (fs > 0) TANDEM_CUDA_RETURN_IF_ERROR(EnqueueAdd(so.data<float>(), y.data<float>(), t * h, stream_));
  *saved = std::move(s);
  return y;
}

absl::StatusOr<Tensor> GpuMoeLayer::CombineRows(const comm::moe::Handle& handle, const Tensor& rows, int64_t width) {
  comm::moe::Handle h = handle;
  h.hidden = static_cast<int>(width);  // combine sums rows of any width
  TANDEM_ASSIGN_OR_RETURN(
      comm::moe::DeviceBuffer out,
      comm::moe::CombineGpu(*comm_, h, rows.raw(), comm::DataType::kF32, stream_, Deadline::In(layout_.timeout)));
  return Tensor::FromStorage({h.num_tokens, width}, DType::kF32, Device::kCuda, out.ptr);
}

absl::StatusOr<Tensor> GpuMoeLayer::Backward(const Saved& s, const Tensor& dy, WeightGradStore* store) {
  const int64_t t = s.tokens;
  const int64_t h = config_.hidden, e_count = config_.num_experts, k = config_.top_k;
  const int64_t f = config_.moe_inter, fs = int64_t{config_.num_shared_experts} * config_.moe_inter;
  if (dy.is_host() || dy.dtype() != DType::kF32 || dy.rank() != 2 || dy.dim(0) != t || dy.dim(1) != h) {
    return absl::InvalidArgumentError(absl::StrCat("gpu moe: output gradient: expected a device f32 [", t, ", ", h,
                                                   "], got ", ShapeString(dy.shape())));
  }
  const DType gt = options_.gemm_dtype;
  const int64_t es = SizeOf(gt);
  const int64_t r_count = s.num_rows, n = s.offsets[slots_];
  TANDEM_ASSIGN_OR_RETURN(Tensor dy_op, Operand(dy, t * h));
  // Shared expert: dxs = dsa W1 + dsb W3.
  TANDEM_ASSIGN_OR_RETURN(Tensor dxs, Zeros({t, h}));
  Tensor dsa_op, dsb_op;
  if (fs > 0) {
    TANDEM_ASSIGN_OR_RETURN(Tensor dsh, Zeros({t, fs}));
    TANDEM_ASSIGN_OR_RETURN(Tensor dsa, Zeros({t, fs}));
    TANDEM_ASSIGN_OR_RETURN(Tensor dsb, Zeros({t, fs}));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, false, t, fs, h}, dy_op.raw(), gt, shared_[1].gemm(), dsh.data<float>(), 1, 0));
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluBackward(s.sa.data<float>(), s.sb.data<float>(), dsh.data<float>(),
                                                      dsa.data<float>(), dsb.data<float>(), t * fs, stream_));
    TANDEM_ASSIGN_OR_RETURN(dsa_op, Operand(dsa, t * fs));
    TANDEM_ASSIGN_OR_RETURN(dsb_op, Operand(dsb, t * fs));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, false, t, h, fs}, dsa_op.raw(), gt, shared_[0].gemm(), dxs.data<float>(), 1, 0));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({false, false, t, h, fs}, dsb_op.raw(), gt, shared_[2].gemm(), dxs.data<float>(), 1, 1));
  }
  // Routed experts: dy to the rows (sent out again with expert
  // parallelism), per entry w * dy_row, and per (row, k) the weight's
  // gradient <dy_row, expert output>.
  Tensor drows = dy;
  if (comm_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(comm::moe::DeviceBuffer d,
                            comm::moe::DispatchCachedGpu(*comm_, s.handle, dy.raw(), comm::DataType::kF32, stream_,
                                                         Deadline::In(layout_.timeout)));
    drows = Tensor::FromStorage({r_count, h}, DType::kF32, Device::kCuda, d.ptr);
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dop, Zeros({n, h}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueGatherRows(drows.data<float>(), s.rows.data<int32_t>(),
                                                s.row_weights.data<float>(), s.entries.data<int32_t>(), n, h,
                                                dop.data<float>(), stream_));
  TANDEM_ASSIGN_OR_RETURN(Tensor dw, Zeros({r_count, k}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRowDots(drows.data<float>(), s.op.data<float>(), s.pos.data<int32_t>(), r_count,
                                             static_cast<int>(k), h, dw.data<float>(), stream_));
  TANDEM_ASSIGN_OR_RETURN(Tensor dop_op, Operand(dop, n * h));
  TANDEM_ASSIGN_OR_RETURN(Tensor dhp, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(Tensor dap, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(Tensor dbp, Zeros({n, f}));
  TANDEM_ASSIGN_OR_RETURN(Tensor dxp, Zeros({n, h}));
  auto wmat = [&](int which, int64_t e) {
    return static_cast<const char*>(experts_[which].gemm()) +
           e * experts_[which].value.dim(1) * experts_[which].value.dim(2) * es;
  };
  std::vector<GemmGroup> d_h;
  for (int64_t e = 0; e < slots_; ++e) {
    const int64_t o = s.offsets[e], m = s.offsets[e + 1] - s.offsets[e];
    d_h.push_back({{false, false, m, f, h},
                   static_cast<const char*>(dop_op.raw()) + o * h * es,
                   wmat(1, e),
                   dhp.data<float>() + o * f});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(d_h, gt, 1, 0));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluBackward(s.ap.data<float>(), s.bp.data<float>(), dhp.data<float>(),
                                                    dap.data<float>(), dbp.data<float>(), n * f, stream_));
  TANDEM_ASSIGN_OR_RETURN(Tensor dap_op, Operand(dap, n * f));
  TANDEM_ASSIGN_OR_RETURN(Tensor dbp_op, Operand(dbp, n * f));
  std::vector<GemmGroup> dx1, dx3;
  for (int64_t e = 0; e < slots_; ++e) {
    const int64_t o = s.offsets[e], m = s.offsets[e + 1] - s.offsets[e];
    dx1.push_back({{false, false, m, h, f},
                   static_cast<const char*>(dap_op.raw()) + o * f * es,
                   wmat(0, e),
                   dxp.data<float>() + o * h});
    dx3.push_back({{false, false, m, h, f},
                   static_cast<const char*>(dbp_op.raw()) + o * f * es,
                   wmat(2, e),
                   dxp.data<float>() + o * h});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dx1, gt, 1, 0));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dx3, gt, 1, 1));
  // Per row, the input gradients of its local experts in top-k order; with
  // expert parallelism these and the weight gradients go back to their
  // tokens, then the shared expert's dx is added, as in the host layer.
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, Zeros({r_count, h}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueCombine(dxp.data<float>(), s.pos.data<int32_t>(), nullptr,
                                             fs > 0 && comm_ == nullptr ? dxs.data<float>() : nullptr, r_count,
                                             static_cast<int>(k), h, dx.data<float>(), stream_));
  if (comm_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(dx, CombineRows(s.handle, dx, h));
    TANDEM_ASSIGN_OR_RETURN(dw, CombineRows(s.handle, dw, k));
    if (fs > 0) TANDEM_CUDA_RETURN_IF_ERROR(EnqueueAdd(dxs.data<float>(), dx.data<float>(), t * h, stream_));
  }
  // Router.
  const RouterParams rp = MakeRouterParams(config_);
  TANDEM_ASSIGN_OR_RETURN(Tensor dlogits, Zeros({t, e_count}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRouterBackward(s.scores.data<float>(), s.idx.data<int32_t>(), dw.data<float>(), rp,
                                                    t, dlogits.data<float>(), stream_));
  TANDEM_RETURN_IF_ERROR(blas_->Gemm({false, false, t, h, e_count}, dlogits.raw(), DType::kF32, gate_.value.raw(),
                                     dx.data<float>(), 1, 1));
  // A deferred closure holds the tensors it reads (shared storage) and the
  // saved forward, which the caller may drop meanwhile.
  auto held = std::make_shared<Saved>(s);
  TANDEM_RETURN_IF_ERROR(deferred_.Run(store, [this, held, dy_op, dsa_op, dsb_op, dop_op, dap_op, dbp_op, dlogits] {
    return WeightGrads(*held, dy_op, dsa_op, dsb_op, dop_op, dap_op, dbp_op, dlogits);
  }));
  return dx;
}

absl::Status GpuMoeLayer::WeightGrads(const Saved& s, const Tensor& dy_op, const Tensor& dsa_op, const Tensor& dsb_op,
                                      const Tensor& dop_op, const Tensor& dap_op, const Tensor& dbp_op,
                                      const Tensor& dlogits) {
  const int64_t t = s.tokens;
  const int64_t h = config_.hidden, e_count = config_.num_experts;
  const int64_t f = config_.moe_inter, fs = int64_t{config_.num_shared_experts} * config_.moe_inter;
  const DType gt = options_.gemm_dtype;
  const int64_t es = SizeOf(gt);
  if (fs > 0) {
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({true, false, h, fs, t}, dy_op.raw(), gt, s.sh_op.raw(), shared_[1].grad.data<float>(), 1, 1));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({true, false, fs, h, t}, dsa_op.raw(), gt, s.x_op.raw(), shared_[0].grad.data<float>(), 1, 1));
    TANDEM_RETURN_IF_ERROR(
        blas_->Gemm({true, false, fs, h, t}, dsb_op.raw(), gt, s.x_op.raw(), shared_[2].grad.data<float>(), 1, 1));
  }
  auto gmat = [&](int which, int64_t e) {
    return experts_[which].grad.data<float>() + e * experts_[which].value.dim(1) * experts_[which].value.dim(2);
  };
  std::vector<GemmGroup> dw1, dw2, dw3;
  for (int64_t e = 0; e < slots_; ++e) {
    const int64_t o = s.offsets[e], m = s.offsets[e + 1] - s.offsets[e];
    const char* xe = static_cast<const char*>(s.xperm_op.raw()) + o * h * es;
    dw1.push_back({{true, false, f, h, m}, static_cast<const char*>(dap_op.raw()) + o * f * es, xe, gmat(0, e)});
    dw2.push_back({{true, false, h, f, m},
                   static_cast<const char*>(dop_op.raw()) + o * h * es,
                   static_cast<const char*>(s.hp_op.raw()) + o * f * es,
                   gmat(1, e)});
    dw3.push_back({{true, false, f, h, m}, static_cast<const char*>(dbp_op.raw()) + o * f * es, xe, gmat(2, e)});
  }
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dw2, gt, 1, 1));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dw1, gt, 1, 1));
  TANDEM_RETURN_IF_ERROR(blas_->GroupedGemm(dw3, gt, 1, 1));
  return blas_->Gemm({true, false, e_count, h, t}, dlogits.raw(), DType::kF32, s.x.raw(), gate_.grad.data<float>(), 1,
                     1);
}

absl::StatusOr<std::vector<Tensor>> GpuMoeLayer::DownloadGrads() const {
  TANDEM_RETURN_IF_ERROR(deferred_.error());
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
  for (int64_t e = 0; e < slots_; ++e) {
    for (int i = 0; i < 3; ++i) {
      Tensor one = Tensor::Zeros({stacked[i].dim(1), stacked[i].dim(2)});
      std::memcpy(one.raw(), stacked[i].data<float>() + e * one.numel(), one.bytes());
      out.push_back(one);
    }
  }
  return out;
}

}  // namespace tandem::model::cuda
