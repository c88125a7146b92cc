#include "model/linear.h"

#include <cstring>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::DotDouble;
using ::tandem::model::testing::GradCheckOptions;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

// L = sum(y * r) for a fixed random r, so dL/dy = r.
struct Fixture {
  Linear layer{"lin", 5, 3};
  Tensor x = RandomTensor({4, 5}, 11);
  Tensor r = RandomTensor({4, 3}, 12);
  Fixture() { layer.Init(7); }
  absl::StatusOr<double> Loss() {
    absl::StatusOr<Tensor> y = layer.Forward(x, nullptr);
    if (!y.ok()) return y.status();
    return DotDouble(*y, r);
  }
};

TEST(LinearTest, ForwardIsXWTranspose) {
  Fixture f;
  ASSERT_OK_AND_ASSIGN(Tensor y, f.layer.Forward(f.x, nullptr));
  const float* w = f.layer.weight().value.data<float>();
  for (int t = 0; t < 4; ++t) {
    for (int o = 0; o < 3; ++o) {
      double want = 0;
      for (int i = 0; i < 5; ++i) want += double{f.x.data<float>()[t * 5 + i]} * w[o * 5 + i];
      EXPECT_NEAR(y.data<float>()[t * 3 + o], want, 1e-6);
    }
  }
}

// Input and weight gradients against finite differences (f32: eps 1e-2,
// rtol 2e-2, atol 1e-3).
TEST(LinearTest, GradientsMatchFiniteDifferences) {
  Fixture f;
  Linear::Saved saved;
  ASSERT_OK(f.layer.Forward(f.x, &saved).status());
  ASSERT_OK_AND_ASSIGN(Tensor dx, f.layer.BackwardInput(saved, f.r));
  f.layer.BackwardWeight(saved, f.r, nullptr);
  auto loss = [&] { return f.Loss(); };
  EXPECT_OK(CheckGradient("x", loss, f.x, dx, {}).status());
  EXPECT_OK(CheckGradient("w", loss, f.layer.weight().value, f.layer.weight().grad, {}).status());
}

// Must-fail twin: a corrupted weight gradient is caught.
TEST(LinearTest, CorruptedGradientFailsCheck) {
  Fixture f;
  Linear::Saved saved;
  ASSERT_OK(f.layer.Forward(f.x, &saved).status());
  f.layer.BackwardWeight(saved, f.r, nullptr);
  f.layer.weight().grad.data<float>()[4] += 0.05f;
  GradCheckOptions all;
  all.max_coords = 1000;
  EXPECT_THAT(CheckGradient(
                  "w", [&] { return f.Loss(); }, f.layer.weight().value, f.layer.weight().grad, all)
                  .status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch at w[4]")));
}

// Split backward: dW waits in the store as one unit and then equals the
// immediate result bit for bit.
TEST(LinearTest, DeferredWeightGradEqualsImmediate) {
  Fixture f;
  Linear::Saved saved;
  ASSERT_OK(f.layer.Forward(f.x, &saved).status());
  f.layer.BackwardWeight(saved, f.r, nullptr);
  Tensor now = f.layer.weight().grad.Clone();
  f.layer.weight().grad.SetZero();
  WeightGradStore store;
  f.layer.BackwardWeight(saved, f.r, &store);
  store.Flush();
  for (float g : f.layer.weight().grad.span()) EXPECT_EQ(g, 0.0f);
  ASSERT_OK(store.Pop());
  EXPECT_EQ(std::memcmp(now.raw(), f.layer.weight().grad.raw(), now.bytes()), 0);
}

TEST(LinearTest, ShapeMismatchRejected) {
  Fixture f;
  EXPECT_THAT(f.layer.Forward(Tensor::Zeros({4, 6}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lin.weight: input: expected a host f32 shape [T, 5], got [4, 6]")));
  Linear::Saved saved;
  ASSERT_OK(f.layer.Forward(f.x, &saved).status());
  EXPECT_THAT(f.layer.BackwardInput(saved, Tensor::Zeros({4, 2})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected shape [4, 3]")));
}

}  // namespace
}  // namespace tandem::model
