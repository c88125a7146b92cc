// -----------------------------------------------------------------------------
// File: linear.h
// -----------------------------------------------------------------------------
//
// Linear layer without bias, y = x W^T with W [out, in] (PyTorch layout),
// on host f32 tensors. Its backward is split as zero-bubble schedules need:
// BackwardInput() returns dx = dy W now, BackwardWeight() hands
// dW += dy^T x to a WeightGradStore (deferred) or runs it at once.
//
// Example:
//   Linear proj("input_proj", /*in=*/16, /*out=*/32);
//   Linear::Saved saved;
//   TANDEM_ASSIGN_OR_RETURN(Tensor y, proj.Forward(x, &saved));
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, proj.BackwardInput(saved, dy));
//   proj.BackwardWeight(saved, dy, &store);
#ifndef TANDEM_MODEL_LINEAR_H_
#define TANDEM_MODEL_LINEAR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

class Linear {
 public:
  // What backward needs from forward: the input (shared, not copied).
  struct Saved {
    Tensor x;
  };

  // `name` is the parameter prefix: the weight is "<name>.weight".
  Linear(std::string name, int64_t in, int64_t out);

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  Parameter& weight() { return weight_; }
  const Parameter& weight() const { return weight_; }

  // Linear::Init()
  //
  // W ~ U(-scale/sqrt(in), scale/sqrt(in)) from the stream (seed, name).
  void Init(uint64_t seed, float scale = 1.0f);

  // Linear::Forward()
  //
  // x [T, in] -> [T, out]. kInvalidArgument "<name>: input: expected shape
  // [T, in], got ..." for another shape. `saved` may be nullptr
  // (inference).
  absl::StatusOr<Tensor> Forward(const Tensor& x, Saved* saved) const;

  // Linear::BackwardInput()
  //
  // dy [T, out] -> dx [T, in].
  absl::StatusOr<Tensor> BackwardInput(const Saved& saved, const Tensor& dy) const;

  // Linear::BackwardWeight()
  //
  // dW += dy^T x, deferred into `store` or now when it is nullptr. The
  // closure keeps x and dy alive. dy must have been checked by
  // BackwardInput().
  void BackwardWeight(const Saved& saved, const Tensor& dy, WeightGradStore* store);

 private:
  int64_t in_;
  int64_t out_;
  Parameter weight_;
};

// AccumulateWeightGrad()
//
// grad [out, in] += dy[T, out]^T x[T, in]; the dW kernel shared by layers.
void AccumulateWeightGrad(const Tensor& dy, const Tensor& x, const Tensor& grad);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_LINEAR_H_
