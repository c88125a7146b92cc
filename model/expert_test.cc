#include "model/expert.h"

#include <cmath>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::DotDouble;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

struct Fixture {
  SwiGlu ffn{"e", 6, 5};
  Tensor x = RandomTensor({4, 6}, 31, 1.5f);
  Tensor r = RandomTensor({4, 6}, 32);
  Fixture() { ffn.Init(3); }
  absl::StatusOr<double> Loss() {
    absl::StatusOr<Tensor> y = ffn.Forward(x, nullptr);
    if (!y.ok()) return y.status();
    return DotDouble(*y, r);
  }
};

TEST(SwiGluTest, ForwardClosedForm) {
  Fixture f;
  ASSERT_OK_AND_ASSIGN(Tensor y, f.ffn.Forward(f.x, nullptr));
  std::vector<Parameter*> p = f.ffn.parameters();
  const float* w1 = p[0]->value.data<float>();
  const float* w2 = p[1]->value.data<float>();
  const float* w3 = p[2]->value.data<float>();
  for (int t = 0; t < 4; ++t) {
    double hid[5];
    for (int i = 0; i < 5; ++i) {
      double a = 0, b = 0;
      for (int j = 0; j < 6; ++j) {
        a += double{w1[i * 6 + j]} * f.x.data<float>()[t * 6 + j];
        b += double{w3[i * 6 + j]} * f.x.data<float>()[t * 6 + j];
      }
      hid[i] = a / (1 + std::exp(-a)) * b;
    }
    for (int o = 0; o < 6; ++o) {
      double want = 0;
      for (int i = 0; i < 5; ++i) want += w2[o * 5 + i] * hid[i];
      EXPECT_NEAR(y.data<float>()[t * 6 + o], want, 1e-5);
    }
  }
}

TEST(SwiGluTest, GradientsMatchFiniteDifferences) {
  Fixture f;
  SwiGlu::Saved saved;
  ASSERT_OK(f.ffn.Forward(f.x, &saved).status());
  WeightGradStore store;
  ASSERT_OK_AND_ASSIGN(Tensor dx, f.ffn.Backward(saved, f.r, &store));
  EXPECT_EQ(store.pending(), 1u);  // the three dW are one closure
  store.Flush();
  ASSERT_OK(store.Pop());
  auto loss = [&] { return f.Loss(); };
  EXPECT_OK(CheckGradient("x", loss, f.x, dx, {}).status());
  const char* names[] = {"w1", "w2", "w3"};
  std::vector<Parameter*> p = f.ffn.parameters();
  for (int i = 0; i < 3; ++i) {
    EXPECT_OK(CheckGradient(names[i], loss, p[i]->value, p[i]->grad, {}).status());
  }
}

// Must-fail twin: using silu(a) instead of silu'(a) for dW1 is caught.
TEST(SwiGluTest, CorruptedGradientFailsCheck) {
  Fixture f;
  SwiGlu::Saved saved;
  ASSERT_OK(f.ffn.Forward(f.x, &saved).status());
  ASSERT_OK(f.ffn.Backward(saved, f.r, nullptr).status());
  Parameter* w1 = f.ffn.parameters()[0];
  for (float& g : w1->grad.span()) g *= 1.2f;
  EXPECT_THAT(CheckGradient("w1", [&] { return f.Loss(); }, w1->value, w1->grad, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch at w1")));
}

TEST(SwiGluTest, ShapeMismatchRejected) {
  Fixture f;
  EXPECT_THAT(f.ffn.Forward(Tensor::Zeros({2, 5}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("e.w1.weight: input")));
}

}  // namespace
}  // namespace tandem::model
