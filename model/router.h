// -----------------------------------------------------------------------------
// File: router.h
// -----------------------------------------------------------------------------
//
// DeepSeek-V3 gate: scores s = sigmoid(z) (or softmax(z)) of the logits
// z = x Wg^T, group-limited top-k selection on s + bias (the aux-loss-free
// balancing bias, used for selection only), and gate weights from the
// unbiased scores. The rule, including tie-breaking, is in SelectExperts()
// and model/README.md. The selection is not differentiated (straight
// through the chosen indices); the weights are.
//
// Example:
//   Router router("layers.1.moe.gate", config);
//   Router::Saved saved;
//   TANDEM_ASSIGN_OR_RETURN(Router::Output r, router.Forward(x, &saved));
//   // r.idx[t * top_k + k], r.weights [T, top_k]
//   TANDEM_ASSIGN_OR_RETURN(Tensor dx, router.Backward(saved, dweights, &store));
#ifndef TANDEM_MODEL_ROUTER_H_
#define TANDEM_MODEL_ROUTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/config.h"
#include "model/linear.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

// SelectExperts()
//
// For each of the T tokens, with c = choice scores [T, E] (s + bias):
//  1. if n_group > 1: group g's score is the sum of the largest
//     min(2, E/n_group) values of c in the group; the topk_group groups
//     with the highest score are kept, ties going to the lower group index;
//  2. among the experts of kept groups, the top_k with the highest c, ties
//     going to the lower expert index, in that order (best first).
// Writes idx [T, top_k]. kInvalidArgument for sizes that disagree with `c`.
// NaN scores never crash; they are never preferred over a number.
absl::Status SelectExperts(const ModelConfig& config, absl::Span<const float> choice, int64_t tokens,
                           absl::Span<int32_t> idx);

class Router {
 public:
  struct Saved {
    Linear::Saved in;
    Tensor scores;             // [T, E] unbiased s
    std::vector<int32_t> idx;  // [T, top_k]
  };
  struct Output {
    std::vector<int32_t> idx;  // [T, top_k] logical experts, best first
    Tensor weights;            // [T, top_k]
  };

  // The gate weight is "<name>.weight" [E, H]; the balancing bias
  // "<name>.bias" [E] (a buffer: not trained by the optimizer).
  Router(const std::string& name, const ModelConfig& config);

  Parameter& weight() { return gate_.weight(); }
  Tensor& bias() { return bias_; }
  const std::string& bias_name() const { return bias_name_; }
  void Init(uint64_t seed, float scale) { gate_.Init(seed, scale); }

  // Router::Forward()
  //
  // x [T, H] -> selection and weights:
  //   sigmoid: w_k = (s[e_k] / sum_j s[e_j]) * route_scale
  //   softmax: w_k = s[e_k] * route_scale
  // (model/README.md gives every operation's order).
  absl::StatusOr<Output> Forward(const Tensor& x, Saved* saved) const;

  // Router::Backward()
  //
  // dweights [T, top_k] -> dx [T, H]; dWg deferred into `store`.
  absl::StatusOr<Tensor> Backward(const Saved& saved, const Tensor& dweights, WeightGradStore* store);

 private:
  ModelConfig config_;
  Linear gate_;
  Tensor bias_;
  std::string bias_name_;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_ROUTER_H_
