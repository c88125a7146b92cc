#include "model/loss.h"

#include <cmath>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LossTest, MseClosedFormAndGradient) {
  ASSERT_OK_AND_ASSIGN(Tensor p, Tensor::FromVector({2, 2}, {1, 2, 3, 4}));
  ASSERT_OK_AND_ASSIGN(Tensor y, Tensor::FromVector({2, 2}, {1, 0, 3, 1}));
  ASSERT_OK_AND_ASSIGN(LossResult r, MseLoss(p, y));
  EXPECT_DOUBLE_EQ(r.loss, (0 + 4 + 0 + 9) / 4.0);
  EXPECT_FLOAT_EQ(r.grad.data<float>()[1], 2 * 2 / 4.0f);
  ASSERT_OK_AND_ASSIGN(LossResult n, MseLoss(p, y, 8.0));
  EXPECT_DOUBLE_EQ(n.loss, 13 / 8.0);
  Tensor x = RandomTensor({3, 4}, 41);
  Tensor t = RandomTensor({3, 4}, 42);
  ASSERT_OK_AND_ASSIGN(LossResult g, MseLoss(x, t));
  auto loss = [&]() -> absl::StatusOr<double> {
    absl::StatusOr<LossResult> l = MseLoss(x, t);
    if (!l.ok()) return l.status();
    return l->loss;
  };
  EXPECT_OK(CheckGradient("pred", loss, x, g.grad, {}).status());
}

TEST(LossTest, CrossEntropyClosedFormAndGradient) {
  ASSERT_OK_AND_ASSIGN(Tensor z, Tensor::FromVector({1, 3}, {0, std::log(2.0f), std::log(5.0f)}));
  ASSERT_OK_AND_ASSIGN(LossResult r, CrossEntropyLoss(z, {1}));
  EXPECT_NEAR(r.loss, -std::log(2.0 / 8.0), 1e-6);
  EXPECT_NEAR(r.grad.data<float>()[0], 1 / 8.0, 1e-6);
  EXPECT_NEAR(r.grad.data<float>()[1], 2 / 8.0 - 1, 1e-6);
  Tensor x = RandomTensor({4, 5}, 43, 3.0f);
  std::vector<int32_t> labels = {0, 4, 2, 2};
  ASSERT_OK_AND_ASSIGN(LossResult g, CrossEntropyLoss(x, labels));
  auto loss = [&]() -> absl::StatusOr<double> {
    absl::StatusOr<LossResult> l = CrossEntropyLoss(x, labels);
    if (!l.ok()) return l.status();
    return l->loss;
  };
  EXPECT_OK(CheckGradient("logits", loss, x, g.grad, {}).status());
  // Must-fail twin: the gradient without the softmax term is caught.
  Tensor wrong = g.grad.Clone();
  for (int t = 0; t < 4; ++t) {
    for (int j = 0; j < 5; ++j) wrong.data<float>()[t * 5 + j] = j == labels[t] ? -0.25f : 0.0f;
  }
  EXPECT_THAT(CheckGradient("logits", loss, x, wrong, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch")));
}

TEST(LossTest, BadInputsRejected) {
  Tensor a = Tensor::Zeros({2, 3});
  EXPECT_THAT(
      MseLoss(a, Tensor::Zeros({3, 2})).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mse loss: target: expected shape [2, 3], got [3, 2]")));
  EXPECT_THAT(MseLoss(a, a, -1).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("normalizer")));
  EXPECT_THAT(CrossEntropyLoss(a, {0, 3}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label 1: expected a class in [0, 3), got 3")));
  EXPECT_THAT(CrossEntropyLoss(a, {0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2 labels, got 1")));
}

}  // namespace
}  // namespace tandem::model
