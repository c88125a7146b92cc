#include "model/rmsnorm.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tandem::model {

RmsNorm::RmsNorm(std::string name, int64_t hidden, float eps)
    : hidden_(hidden), eps_(eps), weight_(MakeParameter(name + ".weight", {hidden}, /*decay=*/false)) {
  for (float& g : weight_.value.span()) g = 1.0f;
}

absl::StatusOr<Tensor> RmsNorm::Forward(const Tensor& x, Saved* saved) const {
  if (x.rank() != 2 || x.dim(1) != hidden_ || !x.is_host() || x.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(weight_.name, ": input: expected a host f32 shape [T, ", hidden_,
                                                   "], got ", ShapeString(x.shape())));
  }
  const int64_t t = x.dim(0);
  Tensor y = Tensor::Zeros({t, hidden_});
  Tensor r = Tensor::Zeros({t});
  const float* g = weight_.value.data<float>();
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x.data<float>() + i * hidden_;
    float* yi = y.data<float>() + i * hidden_;
    float ss = 0.0f;
    for (int64_t j = 0; j < hidden_; ++j) ss += xi[j] * xi[j];
    const float ri = 1.0f / std::sqrt(ss / static_cast<float>(hidden_) + eps_);
    r.data<float>()[i] = ri;
    for (int64_t j = 0; j < hidden_; ++j) yi[j] = (xi[j] * ri) * g[j];
  }
  if (saved != nullptr) {
    saved->x = x;
    saved->r = r;
  }
  return y;
}

absl::StatusOr<Tensor> RmsNorm::Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store) {
  const int64_t t = saved.x.dim(0);
  TANDEM_RETURN_IF_ERROR(dy.CheckShape(absl::StrCat(weight_.name, ": output gradient"), {t, hidden_}));
  Tensor dx = Tensor::Zeros({t, hidden_});
  const float* g = weight_.value.data<float>();
  const float inv_h = 1.0f / static_cast<float>(hidden_);
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = saved.x.data<float>() + i * hidden_;
    const float* dyi = dy.data<float>() + i * hidden_;
    float* dxi = dx.data<float>() + i * hidden_;
    const float ri = saved.r.data<float>()[i];
    float dot = 0.0f;  // sum_j g_j dy_j x_j
    for (int64_t j = 0; j < hidden_; ++j) dot += g[j] * dyi[j] * xi[j];
    const float c = dot * ri * ri * ri * inv_h;
    for (int64_t j = 0; j < hidden_; ++j) {
      dxi[j] = ri * g[j] * dyi[j] - xi[j] * c;
    }
  }
  DeferOrRun(store, [saved, dy, grad = weight_.grad, h = hidden_] {
    float* dg = grad.data<float>();
    for (int64_t i = 0; i < saved.x.dim(0); ++i) {
      const float* xi = saved.x.data<float>() + i * h;
      const float* dyi = dy.data<float>() + i * h;
      const float ri = saved.r.data<float>()[i];
      for (int64_t j = 0; j < h; ++j) dg[j] += dyi[j] * (xi[j] * ri);
    }
  });
  return dx;
}

}  // namespace tandem::model
