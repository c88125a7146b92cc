#include "model/expert.h"

#include <cmath>

#include "base/status_macros.h"
#include "model/internal/cpu_gemm.h"

namespace tandem::model {
namespace {

inline float Sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }

}  // namespace

SwiGlu::SwiGlu(const std::string& name, int64_t hidden, int64_t inter)
    : w1_(name + ".w1", hidden, inter), w2_(name + ".w2", inter, hidden), w3_(name + ".w3", hidden, inter) {}

void SwiGlu::Init(uint64_t seed, float scale) {
  w1_.Init(seed, scale);
  w2_.Init(seed, scale);
  w3_.Init(seed, scale);
}

absl::StatusOr<Tensor> SwiGlu::Forward(const Tensor& x, Saved* saved) const {
  Saved local;
  Saved& s = saved != nullptr ? *saved : local;
  TANDEM_ASSIGN_OR_RETURN(s.a, w1_.Forward(x, &s.in));
  TANDEM_ASSIGN_OR_RETURN(s.b, w3_.Forward(x, nullptr));
  Tensor h = Tensor::Zeros(s.a.shape());
  const float* a = s.a.data<float>();
  const float* b = s.b.data<float>();
  float* hp = h.data<float>();
  for (int64_t i = 0; i < h.numel(); ++i) hp[i] = (a[i] * Sigmoid(a[i])) * b[i];
  return w2_.Forward(h, &s.h);
}

absl::StatusOr<Tensor> SwiGlu::Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store) {
  TANDEM_ASSIGN_OR_RETURN(Tensor dh, w2_.BackwardInput(saved.h, dy));
  Tensor da = Tensor::Zeros(saved.a.shape());
  Tensor db = Tensor::Zeros(saved.a.shape());
  const float* a = saved.a.data<float>();
  const float* b = saved.b.data<float>();
  const float* g = dh.data<float>();
  for (int64_t i = 0; i < da.numel(); ++i) {
    const float s = Sigmoid(a[i]);
    const float silu = a[i] * s;
    db.data<float>()[i] = g[i] * silu;
    da.data<float>()[i] = g[i] * b[i] * (s * (1.0f + a[i] * (1.0f - s)));
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, w1_.BackwardInput(saved.in, da));
  const int64_t t = dx.dim(0);
  internal::MatMulNN(db.data<float>(), w3_.weight().value.data<float>(), dx.data<float>(), t, w3_.in(), w3_.out());
  // One group of deferred work: dW2, dW1, dW3.
  DeferOrRun(store, [saved, dy, da, db, g1 = w1_.weight().grad, g2 = w2_.weight().grad, g3 = w3_.weight().grad] {
    AccumulateWeightGrad(dy, saved.h.x, g2);
    AccumulateWeightGrad(da, saved.in.x, g1);
    AccumulateWeightGrad(db, saved.in.x, g3);
  });
  return dx;
}

}  // namespace tandem::model
