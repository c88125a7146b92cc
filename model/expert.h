// -----------------------------------------------------------------------------
// File: expert.h
// -----------------------------------------------------------------------------
//
// The SwiGLU feed-forward network used for routed experts, the shared expert
// and dense layers (DeepSeek-V3's MLP/Expert):
//   y = w2( silu(w1 x) * (w3 x) ),  silu(a) = a * sigmoid(a),
// with w1, w3 [inter, hidden] and w2 [hidden, inter], no biases. The weight
// gradients of the three projections are deferrable as one group.
//
// Example:
//   SwiGlu ffn("layers.1.moe.experts.5", hidden, inter);
//   ffn.Init(seed);
//   SwiGlu::Saved saved;
//   TANDEM_ASSIGN_OR_RETURN(Tensor y, ffn.Forward(x, &saved));
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, ffn.Backward(saved, dy, &store));
#ifndef TANDEM_MODEL_EXPERT_H_
#define TANDEM_MODEL_EXPERT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/linear.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

class SwiGlu {
 public:
  struct Saved {
    Linear::Saved in;  // x, shared by w1 and w3
    Tensor a;          // w1 x
    Tensor b;          // w3 x
    Linear::Saved h;   // silu(a) * b, the input of w2
  };

  // Parameters "<name>.w1.weight", "<name>.w2.weight", "<name>.w3.weight".
  SwiGlu(const std::string& name, int64_t hidden, int64_t inter);

  int64_t hidden() const { return w1_.in(); }
  int64_t inter() const { return w1_.out(); }

  // SwiGlu::Init()
  //
  // Each projection as Linear::Init(seed, scale).
  void Init(uint64_t seed, float scale = 1.0f);

  // SwiGlu::Forward()
  //
  // x [T, hidden] -> [T, hidden]; kInvalidArgument for another shape.
  absl::StatusOr<Tensor> Forward(const Tensor& x, Saved* saved) const;

  // SwiGlu::Backward()
  //
  // dy [T, hidden] -> dx now; the three weight gradients deferred into
  // `store` (or run now when nullptr).
  absl::StatusOr<Tensor> Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store);

  // The parameters: w1, w2, w3.
  std::vector<Parameter*> parameters() { return {&w1_.weight(), &w2_.weight(), &w3_.weight()}; }

 private:
  Linear w1_;
  Linear w2_;
  Linear w3_;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_EXPERT_H_
