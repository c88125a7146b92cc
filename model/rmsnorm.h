// -----------------------------------------------------------------------------
// File: rmsnorm.h
// -----------------------------------------------------------------------------
//
// RMSNorm over the last dimension: y = x * r * g with
// r = 1 / sqrt(mean(x^2) + eps), on host f32 [T, H] tensors. The weight
// gradient dg += sum_t dy * x * r is deferrable like Linear's.
//
// Example:
//   RmsNorm norm("layers.0.norm", hidden, 1e-6f);
//   RmsNorm::Saved saved;
//   TANDEM_ASSIGN_OR_RETURN(Tensor y, norm.Forward(x, &saved));
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, norm.Backward(saved, dy, &store));
#ifndef TANDEM_MODEL_RMSNORM_H_
#define TANDEM_MODEL_RMSNORM_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

class RmsNorm {
 public:
  struct Saved {
    Tensor x;
    Tensor r;  // [T] reciprocal rms
  };

  // The weight is "<name>.weight", initialised to ones.
  RmsNorm(std::string name, int64_t hidden, float eps);

  Parameter& weight() { return weight_; }
  float eps() const { return eps_; }

  // RmsNorm::Forward()
  //
  // x [T, H] -> [T, H]; kInvalidArgument for another shape.
  absl::StatusOr<Tensor> Forward(const Tensor& x, Saved* saved) const;

  // RmsNorm::Backward()
  //
  // dy [T, H] -> dx now; dg deferred into `store` (or now when nullptr).
  absl::StatusOr<Tensor> Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store);

 private:
  int64_t hidden_;
  float eps_;
  Parameter weight_;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_RMSNORM_H_
