#include "model/loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tandem::model {
namespace {

absl::Status CheckNormalizer(absl::string_view what, double normalizer) {
  if (!(normalizer >= 0.0) || std::isinf(normalizer)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": normalizer: expected a finite value >= 0, got ", normalizer));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LossResult> MseLoss(const Tensor& pred, const Tensor& target, double normalizer) {
  if (absl::Status s = CheckNormalizer("mse loss", normalizer); !s.ok()) {
    return s;
  }
  if (pred.rank() != 2 || !pred.is_host()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mse loss: prediction: expected a host [T, D] tensor, got ", ShapeString(pred.shape())));
  }
  if (absl::Status s = target.CheckShape("mse loss: target", pred.shape()); !s.ok()) {
    return s;
  }
  const double n = normalizer > 0 ? normalizer : static_cast<double>(pred.numel());
  const float scale = n > 0 ? static_cast<float>(2.0 / n) : 0.0f;
  LossResult r;
  r.grad = Tensor::Zeros(pred.shape());
  double sum = 0.0;
  const float* p = pred.data<float>();
  const float* y = target.data<float>();
  float* g = r.grad.data<float>();
  for (int64_t i = 0; i < pred.numel(); ++i) {
    const float d = p[i] - y[i];
    sum += static_cast<double>(d) * d;
    g[i] = scale * d;
  }
  r.loss = n > 0 ? sum / n : 0.0;
  return r;
}

absl::StatusOr<LossResult> CrossEntropyLoss(const Tensor& logits, absl::Span<const int32_t> labels, double normalizer) {
  if (absl::Status s = CheckNormalizer("cross-entropy loss", normalizer); !s.ok()) {
    return s;
  }
  if (logits.rank() != 2 || !logits.is_host() || logits.dim(1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cross-entropy loss: logits: expected a host [T, V] tensor with V > "
                     "0, got ",
                     ShapeString(logits.shape())));
  }
  const int64_t t = logits.dim(0);
  const int64_t v = logits.dim(1);
  if (static_cast<int64_t>(labels.size()) != t) {
    return absl::InvalidArgumentError(
        absl::StrCat("cross-entropy loss: labels: expected ", t, " labels, got ", labels.size()));
  }
  for (int64_t i = 0; i < t; ++i) {
    if (labels[i] < 0 || labels[i] >= v) {
      return absl::InvalidArgumentError(
          absl::StrCat("cross-entropy loss: label ", i, ": expected a class in [0, ", v, "), got ", labels[i]));
    }
  }
  const double n = normalizer > 0 ? normalizer : static_cast<double>(t);
  const float scale = n > 0 ? static_cast<float>(1.0 / n) : 0.0f;
  LossResult r;
  r.grad = Tensor::Zeros(logits.shape());
  double sum = 0.0;
  for (int64_t i = 0; i < t; ++i) {
    const float* z = logits.data<float>() + i * v;
    float* g = r.grad.data<float>() + i * v;
    const float zmax = *std::max_element(z, z + v);
    double denom = 0.0;
    for (int64_t j = 0; j < v; ++j) denom += std::exp(static_cast<double>(z[j] - zmax));
    const double log_denom = std::log(denom);
    sum += log_denom - static_cast<double>(z[labels[i]] - zmax);
    for (int64_t j = 0; j < v; ++j) {
      const double p = std::exp(static_cast<double>(z[j] - zmax) - log_denom);
      g[j] = scale * static_cast<float>(p - (j == labels[i] ? 1.0 : 0.0));
    }
  }
  r.loss = n > 0 ? sum / n : 0.0;
  return r;
}

}  // namespace tandem::model
