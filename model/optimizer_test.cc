#include "model/optimizer.h"

#include <cmath>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

Parameter Scalar(float value, float grad) {
  Parameter p = MakeParameter("p", {1});
  p.value.data<float>()[0] = value;
  p.grad.data<float>()[0] = grad;
  return p;
}

// Two SGD steps by hand: v1 = g1, p1 = p0 - lr g1; v2 = mu g1 + g2.
TEST(OptimizerTest, SgdMomentumClosedForm) {
  Parameter p = Scalar(1.0f, 0.5f);
  Sgd sgd({0.1f, 0.9f, 0.0f});
  Parameter* ps[] = {&p};
  ASSERT_OK(sgd.Step(ps));
  EXPECT_FLOAT_EQ(p.value.data<float>()[0], 1.0f - 0.1f * 0.5f);
  p.grad.data<float>()[0] = -0.25f;
  ASSERT_OK(sgd.Step(ps));
  EXPECT_FLOAT_EQ(p.value.data<float>()[0], 0.95f - 0.1f * (0.9f * 0.5f - 0.25f));
  EXPECT_EQ(sgd.steps(), 2);
}

// AdamW's first step moves every weight by lr (bias-corrected m/sqrt(v) =
// sign(g)), after decoupled decay.
TEST(OptimizerTest, AdamWClosedForm) {
  Parameter p = Scalar(2.0f, -3.0f);
  AdamW adam({0.01f, 0.9f, 0.999f, 1e-8f, 0.1f});
  Parameter* ps[] = {&p};
  ASSERT_OK(adam.Step(ps));
  EXPECT_NEAR(p.value.data<float>()[0], 2.0f * (1 - 0.01f * 0.1f) + 0.01f, 1e-6);
  p.grad.data<float>()[0] = 1.0f;
  const float w1 = p.value.data<float>()[0];
  ASSERT_OK(adam.Step(ps));
  const double m = (0.9 * 0.1 * -3 + 0.1 * 1) / (1 - 0.81);
  const double v = (0.999 * 0.001 * 9 + 0.001 * 1) / (1 - 0.999 * 0.999);
  EXPECT_NEAR(p.value.data<float>()[0], w1 * (1 - 0.001) - 0.01 * m / (std::sqrt(v) + 1e-8), 1e-6);
}

// Both optimizers minimise a quadratic: f(p) = sum (p - 3)^2.
TEST(OptimizerTest, ConvergesOnQuadratic) {
  for (int kind = 0; kind < 2; ++kind) {
    Parameter p = MakeParameter("q", {4});
    Sgd sgd({0.05f, 0.9f, 0.0f});
    AdamW adam({0.1f, 0.9f, 0.999f, 1e-8f, 0.0f});
    Optimizer& opt = kind == 0 ? static_cast<Optimizer&>(sgd) : adam;
    Parameter* ps[] = {&p};
    for (int step = 0; step < 300; ++step) {
      for (int i = 0; i < 4; ++i) p.grad.data<float>()[i] = 2 * (p.value.data<float>()[i] - 3);
      ASSERT_OK(opt.Step(ps));
    }
    for (float v : p.value.span()) EXPECT_NEAR(v, 3.0f, 1e-2) << opt.name();
  }
}

TEST(OptimizerTest, BadStateRejected) {
  Parameter p = Scalar(1, 1);
  p.state[0] = {1.0f, 2.0f};
  Sgd sgd({});
  Parameter* ps[] = {&p};
  EXPECT_THAT(sgd.Step(ps), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("p: optimizer state 0: expected 1 values, got 2")));
  Parameter q = Scalar(1, 1);
  q.grad = Tensor::Zeros({2});
  Parameter* qs[] = {&q};
  EXPECT_THAT(sgd.Step(qs), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gradient")));
}

}  // namespace
}  // namespace tandem::model
