// -----------------------------------------------------------------------------
// File: optimizer.h
// -----------------------------------------------------------------------------
//
// SGD with momentum and AdamW (PyTorch's update rules) over Parameters. The
// state lives in each Parameter (state[0], state[1]), so it moves with an
// expert when the placement changes, and is saved by checkpoint.h.
//
//   SGD:   v = mu * v + (g + wd * p);  p -= lr * v       (v = g at step 1)
//   AdamW: p *= 1 - lr * wd (decay params only);
//          m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//          p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//
// Example:
//   AdamW opt({.lr = 1e-3});
//   TANDEM_RETURN_IF_ERROR(opt.Step(model->Parameters()));
#ifndef TANDEM_MODEL_OPTIMIZER_H_
#define TANDEM_MODEL_OPTIMIZER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/tensor.h"

namespace tandem::model {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Optimizer::Step()
  //
  // Updates every parameter from its gradient (gradients are left as they
  // are; call ZeroGrad). kInvalidArgument for a parameter whose gradient
  // shape differs or whose state has the wrong size.
  virtual absl::Status Step(absl::Span<Parameter* const> params) = 0;
  // Name and number of the per-parameter state slots (checkpoint names:
  // "optim.<state name>.<parameter name>").
  virtual int num_state_slots() const = 0;
  virtual const char* state_name(int slot) const = 0;
  virtual const char* name() const = 0;

  // Steps taken (AdamW's t).
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 protected:
  int64_t steps_ = 0;
};

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
};

class Sgd : public Optimizer {
 public:
  explicit Sgd(SgdOptions options) : options_(options) {}
  absl::Status Step(absl::Span<Parameter* const> params) override;
  int num_state_slots() const override { return 1; }
  const char* state_name(int slot) const override { return "momentum_buffer"; }
  const char* name() const override { return "sgd"; }

 private:
  SgdOptions options_;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
};

class AdamW : public Optimizer {
 public:
  explicit AdamW(AdamWOptions options) : options_(options) {}
  absl::Status Step(absl::Span<Parameter* const> params) override;
  int num_state_slots() const override { return 2; }
  const char* state_name(int slot) const override { return slot == 0 ? "exp_avg" : "exp_avg_sq"; }
  const char* name() const override { return "adamw"; }

 private:
  AdamWOptions options_;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_OPTIMIZER_H_
