#include "model/rmsnorm.h"

#include <cmath>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/init.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::DotDouble;
using ::tandem::model::testing::GradCheckOptions;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

struct Fixture {
  RmsNorm norm{"n", 6, 1e-6f};
  Tensor x = RandomTensor({3, 6}, 21);
  Tensor r = RandomTensor({3, 6}, 22);
  Fixture() { InitUniform(5, "g", 1.0f, norm.weight().value); }
  absl::StatusOr<double> Loss() {
    absl::StatusOr<Tensor> y = norm.Forward(x, nullptr);
    if (!y.ok()) return y.status();
    return DotDouble(*y, r);
  }
};

TEST(RmsNormTest, ForwardClosedForm) {
  Fixture f;
  ASSERT_OK_AND_ASSIGN(Tensor y, f.norm.Forward(f.x, nullptr));
  for (int t = 0; t < 3; ++t) {
    double ss = 0;
    for (int j = 0; j < 6; ++j) ss += std::pow(f.x.data<float>()[t * 6 + j], 2);
    const double r = 1.0 / std::sqrt(ss / 6 + 1e-6);
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(y.data<float>()[t * 6 + j], f.x.data<float>()[t * 6 + j] * r * f.norm.weight().value.data<float>()[j],
                  1e-5);
    }
  }
}

TEST(RmsNormTest, GradientsMatchFiniteDifferences) {
  Fixture f;
  RmsNorm::Saved saved;
  ASSERT_OK(f.norm.Forward(f.x, &saved).status());
  ASSERT_OK_AND_ASSIGN(Tensor dx, f.norm.Backward(saved, f.r, nullptr));
  auto loss = [&] { return f.Loss(); };
  EXPECT_OK(CheckGradient("x", loss, f.x, dx, {}).status());
  EXPECT_OK(CheckGradient("g", loss, f.norm.weight().value, f.norm.weight().grad, {}).status());
}

// Must-fail twin: dropping the mean term of dx (a classic bug) is caught.
TEST(RmsNormTest, CorruptedGradientFailsCheck) {
  Fixture f;
  RmsNorm::Saved saved;
  ASSERT_OK(f.norm.Forward(f.x, &saved).status());
  ASSERT_OK_AND_ASSIGN(Tensor dx, f.norm.Backward(saved, f.r, nullptr));
  for (int t = 0; t < 3; ++t) {
    for (int j = 0; j < 6; ++j) {
      dx.data<float>()[t * 6 + j] =
          saved.r.data<float>()[t] * f.norm.weight().value.data<float>()[j] * f.r.data<float>()[t * 6 + j];
    }
  }
  EXPECT_THAT(CheckGradient("x", [&] { return f.Loss(); }, f.x, dx, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch")));
}

TEST(RmsNormTest, DeferredWeightGrad) {
  Fixture f;
  RmsNorm::Saved saved;
  ASSERT_OK(f.norm.Forward(f.x, &saved).status());
  WeightGradStore store;
  ASSERT_OK(f.norm.Backward(saved, f.r, &store).status());
  EXPECT_EQ(store.pending(), 1u);
  for (float g : f.norm.weight().grad.span()) EXPECT_EQ(g, 0.0f);
  store.Flush();
  ASSERT_OK(store.Pop());
  double sum = 0;
  for (float g : f.norm.weight().grad.span()) sum += std::fabs(g);
  EXPECT_GT(sum, 0.0);
  EXPECT_THAT(f.norm.Forward(Tensor::Zeros({3, 5}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got [3, 5]")));
}

}  // namespace
}  // namespace tandem::model
