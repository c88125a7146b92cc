#include "model/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tandem::model {
namespace {

// Sizes the state slots on first use; kInvalidArgument on mismatch.
absl::Status Prepare(Parameter& p, int slots, bool first_step) {
  if (p.grad.shape() != p.value.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(p.name, ": gradient: expected shape ", ShapeString(p.value.shape()),
                                                   ", got ", ShapeString(p.grad.shape())));
  }
  for (int s = 0; s < slots; ++s) {
    if (p.state[s].empty() && first_step) p.state[s].assign(p.value.numel(), 0.0f);
    if (static_cast<int64_t>(p.state[s].size()) != p.value.numel()) {
      return absl::InvalidArgumentError(absl::StrCat(p.name, ": optimizer state ", s, ": expected ", p.value.numel(),
                                                     " values, got ", p.state[s].size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Sgd::Step(absl::Span<Parameter* const> params) {
  for (Parameter* p : params) {
    if (absl::Status s = Prepare(*p, 1, true); !s.ok()) return s;
  }
  for (Parameter* p : params) {
    float* w = p->value.data<float>();
    const float* g = p->grad.data<float>();
    float* v = p->state[0].data();
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      const float d = g[i] + options_.weight_decay * w[i];
      v[i] = options_.momentum * v[i] + d;  // v = d at the first step
      w[i] -= options_.lr * v[i];
    }
  }
  ++steps_;
  return absl::OkStatus();
}

absl::Status AdamW::Step(absl::Span<Parameter* const> params) {
  for (Parameter* p : params) {
    if (absl::Status s = Prepare(*p, 2, true); !s.ok()) return s;
  }
  ++steps_;
  const double t = static_cast<double>(steps_);
  const float c1 = static_cast<float>(1.0 - std::pow(double{options_.beta1}, t));
  const float c2 = static_cast<float>(1.0 - std::pow(double{options_.beta2}, t));
  for (Parameter* p : params) {
    float* w = p->value.data<float>();
    const float* g = p->grad.data<float>();
    float* m = p->state[0].data();
    float* v = p->state[1].data();
    const float decay = p->decay ? 1.0f - options_.lr * options_.weight_decay : 1.0f;
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      w[i] *= decay;
      m[i] = options_.beta1 * m[i] + (1.0f - options_.beta1) * g[i];
      v[i] = options_.beta2 * v[i] + (1.0f - options_.beta2) * g[i] * g[i];
      w[i] -= options_.lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + options_.eps);
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem::model
