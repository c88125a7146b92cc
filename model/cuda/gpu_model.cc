#include "model/cuda/gpu_model.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "model/cuda/layer_kernels.h"

namespace tandem::model::cuda {
namespace {

struct LinearState : UnitModel::UnitState {
  Tensor x;
};

struct BlockState : UnitModel::UnitState {
  Tensor x, n, r;                           // input, normed input, inverse RMS
  Tensor a, b, hidden;                      // dense SwiGLU: x W1^T, x W3^T, silu(a) b
  std::shared_ptr<GpuMoeLayer::Saved> moe;  // MoE block
};

struct HeadState : UnitModel::UnitState {
  Tensor x, n, r;
};

absl::Status CheckInput(const Tensor& x, int64_t width, int unit) {
  if (x.is_host() || x.dtype() != DType::kF32 || x.rank() != 2 || x.dim(1) != width) {
    return absl::InvalidArgumentError(absl::StrCat("gpu unit ", unit, ": expected a device f32 [T, ", width, "], got ",
                                                   x.is_host() ? "host " : "", ShapeString(x.shape())));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GpuModel::Weight> GpuModel::Upload(Parameter* p) {
  Weight w;
  w.host = p;
  TANDEM_ASSIGN_OR_RETURN(w.value, ToDevice(p->value));
  TANDEM_ASSIGN_OR_RETURN(w.grad, DeviceZeros(p->value.shape(), DType::kF32));
  return w;
}

absl::StatusOr<std::unique_ptr<GpuModel>> GpuModel::Create(Model& host, cudaStream_t stream, GpuMoeOptions options) {
  std::unique_ptr<GpuModel> g(new GpuModel(host));
  g->stream_ = stream;
  g->pool_ = DevicePool::Create(stream);
  TANDEM_ASSIGN_OR_RETURN(g->blas_, Blas::Create(stream));
  const int units = host.num_units();
  TANDEM_ASSIGN_OR_RETURN(g->input_proj_, g->Upload(host.UnitParameters(0)[0]));
  std::vector<Parameter*> head = host.UnitParameters(units - 1);
  TANDEM_ASSIGN_OR_RETURN(g->final_norm_, g->Upload(head[0]));
  TANDEM_ASSIGN_OR_RETURN(g->head_, g->Upload(head[1]));
  std::vector<MoeLayer*> moes = host.moe_layers();
  for (int u = 1; u < units - 1; ++u) {
    std::vector<Parameter*> p = host.UnitParameters(u);
    Block b;
    TANDEM_ASSIGN_OR_RETURN(b.norm, g->Upload(p[0]));
    const int layer = u - 1;
    if (layer < host.config().num_dense_layers) {
      for (int i = 0; i < 3; ++i) {
        TANDEM_ASSIGN_OR_RETURN(b.ffn[i], g->Upload(p[1 + i]));
      }
    } else {
      TANDEM_ASSIGN_OR_RETURN(b.moe, GpuMoeLayer::Create(*moes[layer - host.config().num_dense_layers], host.config(),
                                                         options, stream, g->pool_));
    }
    g->blocks_.push_back(std::move(b));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // uploads done before any stream work
  return g;
}

absl::StatusOr<Tensor> GpuModel::Linear(const Weight& w, const Tensor& x) {
  const int64_t t = x.dim(0), out = w.value.dim(0), in = w.value.dim(1);
  TANDEM_ASSIGN_OR_RETURN(Tensor y, pool_->Zeros({t, out}));
  TANDEM_RETURN_IF_ERROR(
      blas_->Gemm({false, true, t, out, in}, x.raw(), DType::kF32, w.value.raw(), y.data<float>(), 1, 0));
  return y;
}

absl::StatusOr<Tensor> GpuModel::LinearBackward(const Weight& w, const Tensor& x, const Tensor& dy,
                                                WeightGradStore* store) {
  const int64_t t = x.dim(0), out = w.value.dim(0), in = w.value.dim(1);
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, pool_->Zeros({t, in}));
  TANDEM_RETURN_IF_ERROR(
      blas_->Gemm({false, false, t, in, out}, dy.raw(), DType::kF32, w.value.raw(), dx.data<float>(), 1, 0));
  TANDEM_RETURN_IF_ERROR(deferred_.Run(store, [this, w, x, dy, t, out, in] {
    return blas_->Gemm({true, false, out, in, t}, dy.raw(), DType::kF32, x.raw(), w.grad.data<float>(), 1, 1);
  }));
  return dx;
}

absl::StatusOr<Tensor> GpuModel::Norm(const Weight& g, const Tensor& x, Tensor* r) {
  const int64_t t = x.dim(0), h = x.dim(1);
  TANDEM_ASSIGN_OR_RETURN(Tensor y, pool_->Zeros({t, h}));
  TANDEM_ASSIGN_OR_RETURN(*r, pool_->Zeros({t}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRmsNormForward(x.data<float>(), g.value.data<float>(), y.data<float>(),
                                                    r->data<float>(), t, h, config().norm_eps, stream_));
  return y;
}

absl::StatusOr<Tensor> GpuModel::NormBackward(const Weight& g, const Tensor& x, const Tensor& r, const Tensor& dy,
                                              WeightGradStore* store) {
  const int64_t t = x.dim(0), h = x.dim(1);
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, pool_->Zeros({t, h}));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRmsNormBackward(x.data<float>(), g.value.data<float>(), r.data<float>(),
                                                     dy.data<float>(), dx.data<float>(), nullptr, t, h, stream_));
  TANDEM_RETURN_IF_ERROR(deferred_.Run(store, [this, g, x, r, dy, t, h]() -> absl::Status {
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueRmsNormBackward(x.data<float>(), g.value.data<float>(), r.data<float>(),
                                                       dy.data<float>(), nullptr, g.grad.data<float>(), t, h, stream_));
    return absl::OkStatus();
  }));
  return dx;
}

absl::StatusOr<Tensor> GpuModel::UnitForward(int unit, const Tensor& input, std::unique_ptr<UnitState>* state) {
  if (unit < 0 || unit >= num_units()) {
    return absl::InvalidArgumentError(absl::StrCat("unit: expected a value in [0, ", num_units(), "), got ", unit));
  }
  const ModelConfig& c = config();
  if (unit == 0) {
    Tensor x = input;
    if (x.is_host()) {
      TANDEM_ASSIGN_OR_RETURN(x, pool_->Copy(input.shape(), input.raw()));
    }
    TANDEM_RETURN_IF_ERROR(CheckInput(x, c.input_dim, unit));
    auto s = std::make_unique<LinearState>();
    s->x = x;
    TANDEM_ASSIGN_OR_RETURN(Tensor y, Linear(input_proj_, x));
    if (state != nullptr) *state = std::move(s);
    return y;
  }
  TANDEM_RETURN_IF_ERROR(CheckInput(input, c.hidden, unit));
  if (unit == num_units() - 1) {
    auto s = std::make_unique<HeadState>();
    s->x = input;
    TANDEM_ASSIGN_OR_RETURN(s->n, Norm(final_norm_, input, &s->r));
    TANDEM_ASSIGN_OR_RETURN(Tensor y, Linear(head_, s->n));
    if (state != nullptr) *state = std::move(s);
    return y;
  }
  Block& b = blocks_[unit - 1];
  auto s = std::make_unique<BlockState>();
  s->x = input;
  TANDEM_ASSIGN_OR_RETURN(s->n, Norm(b.norm, input, &s->r));
  Tensor f;
  if (b.moe != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(f, b.moe->Forward(s->n, &s->moe));
  } else {
    TANDEM_ASSIGN_OR_RETURN(s->a, Linear(b.ffn[0], s->n));
    TANDEM_ASSIGN_OR_RETURN(s->b, Linear(b.ffn[2], s->n));
    TANDEM_ASSIGN_OR_RETURN(s->hidden, pool_->Zeros(s->a.shape()));
    TANDEM_CUDA_RETURN_IF_ERROR(
        EnqueueSwiGluForward(s->a.data<float>(), s->b.data<float>(), s->hidden.data<float>(), s->a.numel(), stream_));
    TANDEM_ASSIGN_OR_RETURN(f, Linear(b.ffn[1], s->hidden));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueAdd(input.data<float>(), f.data<float>(), f.numel(), stream_));  // residual
  if (state != nullptr) *state = std::move(s);
  return f;
}

absl::StatusOr<Tensor> GpuModel::UnitBackward(int unit, const UnitState& state, const Tensor& dy,
                                              WeightGradStore* store) {
  if (unit < 0 || unit >= num_units()) {
    return absl::InvalidArgumentError(absl::StrCat("unit: expected a value in [0, ", num_units(), "), got ", unit));
  }
  if (unit == 0) {
    TANDEM_ASSIGN_OR_RETURN(const LinearState* s, StateAs<LinearState>(state, unit));
    TANDEM_RETURN_IF_ERROR(CheckInput(dy, config().hidden, unit));
    return LinearBackward(input_proj_, s->x, dy, store);
  }
  if (unit == num_units() - 1) {
    TANDEM_ASSIGN_OR_RETURN(const HeadState* s, StateAs<HeadState>(state, unit));
    TANDEM_RETURN_IF_ERROR(CheckInput(dy, config().output_dim, unit));
    TANDEM_ASSIGN_OR_RETURN(Tensor dn, LinearBackward(head_, s->n, dy, store));
    return NormBackward(final_norm_, s->x, s->r, dn, store);
  }
  TANDEM_ASSIGN_OR_RETURN(const BlockState* s, StateAs<BlockState>(state, unit));
  TANDEM_RETURN_IF_ERROR(CheckInput(dy, config().hidden, unit));
  Block& b = blocks_[unit - 1];
  Tensor dn;
  if (b.moe != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(dn, b.moe->Backward(*s->moe, dy, store));
  } else {
    TANDEM_ASSIGN_OR_RETURN(Tensor dh, LinearBackward(b.ffn[1], s->hidden, dy, store));
    TANDEM_ASSIGN_OR_RETURN(Tensor da, pool_->Zeros(s->a.shape()));
    TANDEM_ASSIGN_OR_RETURN(Tensor db, pool_->Zeros(s->a.shape()));
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSwiGluBackward(s->a.data<float>(), s->b.data<float>(), dh.data<float>(),
                                                      da.data<float>(), db.data<float>(), s->a.numel(), stream_));
    TANDEM_ASSIGN_OR_RETURN(dn, LinearBackward(b.ffn[0], s->n, da, store));
    TANDEM_ASSIGN_OR_RETURN(Tensor dn3, LinearBackward(b.ffn[2], s->n, db, store));
    TANDEM_CUDA_RETURN_IF_ERROR(EnqueueAdd(dn3.data<float>(), dn.data<float>(), dn.numel(), stream_));
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, NormBackward(b.norm, s->x, s->r, dn, store));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueAdd(dy.data<float>(), dx.data<float>(), dx.numel(), stream_));  // residual
  return dx;
}

absl::StatusOr<LossResult> GpuModel::Loss(const Tensor& out, const Target& target) {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  TANDEM_ASSIGN_OR_RETURN(Tensor host_out, ToHost(out));
  TANDEM_ASSIGN_OR_RETURN(LossResult r, UnitModel::Loss(host_out, target));
  TANDEM_ASSIGN_OR_RETURN(r.grad, pool_->Copy(r.grad.shape(), r.grad.raw()));
  return r;
}

absl::Status GpuModel::Reload(Weight& w) {
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.grad.raw(), 0, w.grad.bytes(), stream_));
  // From pageable memory: returns once the host value has been staged.
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(w.value.raw(), w.host->value.raw(), w.value.bytes(), cudaMemcpyHostToDevice, stream_));
  return absl::OkStatus();
}

absl::Status GpuModel::ReloadParameters() {
  TANDEM_RETURN_IF_ERROR(deferred_.CheckIdle("gpu model: reload"));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  for (Weight* w : {&input_proj_, &final_norm_, &head_}) TANDEM_RETURN_IF_ERROR(Reload(*w));
  for (Block& b : blocks_) {
    TANDEM_RETURN_IF_ERROR(Reload(b.norm));
    if (b.moe != nullptr) {
      TANDEM_RETURN_IF_ERROR(b.moe->Reload());
      continue;
    }
    for (Weight& w : b.ffn) TANDEM_RETURN_IF_ERROR(Reload(w));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status GpuModel::SyncGradients() {
  TANDEM_RETURN_IF_ERROR(deferred_.error());
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  auto download = [](const Weight& w) -> absl::Status {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(w.host->grad.raw(), w.grad.raw(), w.grad.bytes(), cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(download(input_proj_));
  TANDEM_RETURN_IF_ERROR(download(final_norm_));
  TANDEM_RETURN_IF_ERROR(download(head_));
  std::vector<MoeLayer*> moes = host_.moe_layers();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    TANDEM_RETURN_IF_ERROR(download(b.norm));
    if (b.moe == nullptr) {
      for (const Weight& w : b.ffn) TANDEM_RETURN_IF_ERROR(download(w));
      continue;
    }
    MoeLayer& host = *moes[i - config().num_dense_layers];
    std::vector<Parameter*> params = host.dense_parameters();
    for (Parameter* p : host.expert_parameters()) params.push_back(p);
    TANDEM_ASSIGN_OR_RETURN(std::vector<Tensor> grads, b.moe->DownloadGrads());
    if (grads.size() != params.size()) return absl::InternalError("gpu model: MoE gradient count differs");
    for (size_t j = 0; j < params.size(); ++j) std::memcpy(params[j]->grad.raw(), grads[j].raw(), grads[j].bytes());
  }
  return absl::OkStatus();
}

}  // namespace tandem::model::cuda
