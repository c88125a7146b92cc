// -----------------------------------------------------------------------------
// File: loss.h
// -----------------------------------------------------------------------------
//
// Losses with their gradients, on host f32 tensors:
//   MSE:           L = sum_{t,j} (p[t,j] - y[t,j])^2 / N,  N = T * D default
//   cross-entropy: L = sum_t -log softmax(z_t)[label_t] / N, N = T default
// The sums accumulate in double; the returned loss is that double. A caller
// that splits one batch over ranks or micro-batches passes the global N as
// `normalizer` so that the per-part gradients add up to the whole batch's.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(LossResult r, MseLoss(pred, target));
//   // r.grad = dL/dpred, same shape as pred
#ifndef TANDEM_MODEL_LOSS_H_
#define TANDEM_MODEL_LOSS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/tensor.h"

namespace tandem::model {

struct LossResult {
  double loss = 0.0;
  Tensor grad;  // dL/dinput
};

// MseLoss()
//
// kInvalidArgument when shapes differ or normalizer < 0 (0 = T * D).
absl::StatusOr<LossResult> MseLoss(const Tensor& pred, const Tensor& target, double normalizer = 0.0);

// CrossEntropyLoss()
//
// logits [T, V], labels T values in [0, V). kInvalidArgument for a label out
// of range or a count mismatch, or normalizer < 0 (0 = T).
absl::StatusOr<LossResult> CrossEntropyLoss(const Tensor& logits, absl::Span<const int32_t> labels,
                                            double normalizer = 0.0);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_LOSS_H_
