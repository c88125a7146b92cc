#include "model/router.h"

#include <cmath>
#include <limits>

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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelConfig GroupedConfig() {
  ModelConfig c;
  c.hidden = 6;
  c.num_experts = 8;
  c.n_group = 4;  // groups {0,1} {2,3} {4,5} {6,7}
  c.topk_group = 2;
  c.top_k = 3;
  return c;
}

// Group scores (top-2 sums): g0 = .9+.1 = 1.0, g1 = .5+.45 = .95,
// g2 = .95+.0 = .95, g3 = .2+.3 = .5. Kept: g0, then g1 (tie with g2 goes
// to the lower group). Best experts among {0,1,2,3}: 0 (.9), 2 (.5), 3 (.45).
TEST(RouterTest, GroupLimitedSelectionByHand) {
  std::vector<float> c = {0.9f, 0.1f, 0.5f, 0.45f, 0.95f, 0.0f, 0.2f, 0.3f};
  std::vector<int32_t> idx(3);
  ASSERT_OK(SelectExperts(GroupedConfig(), c, 1, absl::MakeSpan(idx)));
  EXPECT_THAT(idx, ElementsAre(0, 2, 3));
  // Without group limiting expert 4 (.95) would win first.
  ModelConfig flat = GroupedConfig();
  flat.n_group = 1;
  flat.topk_group = 1;
  ASSERT_OK(SelectExperts(flat, c, 1, absl::MakeSpan(idx)));
  EXPECT_THAT(idx, ElementsAre(4, 0, 2));
}

// Equal scores go to the lower expert index; NaN never wins.
TEST(RouterTest, TieBreakAndNan) {
  ModelConfig flat = GroupedConfig();
  flat.n_group = 1;
  flat.topk_group = 1;
  std::vector<float> c = {0.5f, 0.7f, 0.5f, 0.7f, 0.1f, 0.5f, 0.0f, 0.0f};
  std::vector<int32_t> idx(3);
  ASSERT_OK(SelectExperts(flat, c, 1, absl::MakeSpan(idx)));
  EXPECT_THAT(idx, ElementsAre(1, 3, 0));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> n = {nan, 0.1f, nan, 0.2f, nan, nan, nan, 0.3f};
  ASSERT_OK(SelectExperts(flat, n, 1, absl::MakeSpan(idx)));
  EXPECT_THAT(idx, ElementsAre(7, 3, 1));
  std::vector<float> all_nan(8, nan);
  ASSERT_OK(SelectExperts(GroupedConfig(), all_nan, 1, absl::MakeSpan(idx)));
  EXPECT_THAT(idx, ElementsAre(0, 1, 2));
}

// The bias changes the choice, not the weights: weights come from the
// unbiased scores, normalised (sigmoid) and scaled.
TEST(RouterTest, BiasForSelectionOnly) {
  ModelConfig c = GroupedConfig();
  c.n_group = 1;
  c.topk_group = 1;
  c.top_k = 2;
  c.route_scale = 2.5f;
  Router router("gate", c);
  router.Init(1, 1.0f);
  Tensor x = RandomTensor({1, 6}, 2);
  ASSERT_OK_AND_ASSIGN(Router::Output plain, router.Forward(x, nullptr));
  const int worst = [&] {
    Router::Saved s;
    (void)router.Forward(x, &s);
    int w = 0;
    for (int e = 1; e < 8; ++e) {
      if (s.scores.data<float>()[e] < s.scores.data<float>()[w]) w = e;
    }
    return w;
  }();
  router.bias().data<float>()[worst] = 10.0f;
  Router::Saved s;
  ASSERT_OK_AND_ASSIGN(Router::Output biased, router.Forward(x, &s));
  EXPECT_EQ(biased.idx[0], worst);
  EXPECT_EQ(biased.idx[1], plain.idx[0]);
  const float* sc = s.scores.data<float>();
  const float sum = sc[worst] + sc[plain.idx[0]];
  EXPECT_FLOAT_EQ(biased.weights.data<float>()[0], sc[worst] / sum * 2.5f);
  EXPECT_FLOAT_EQ(biased.weights.data<float>()[1], sc[plain.idx[0]] / sum * 2.5f);
}

class RouterGradTest : public ::testing::TestWithParam<ScoreFunc> {};

// Gradients of the gate weights with respect to x and Wg; coordinates whose
// perturbation changes the selection are skipped (the selection is
// piecewise constant).
TEST_P(RouterGradTest, GradientsMatchFiniteDifferences) {
  ModelConfig c = GroupedConfig();
  c.score_func = GetParam();
  c.route_scale = 1.5f;
  Router router("gate", c);
  router.Init(4, 1.0f);
  Tensor x = RandomTensor({5, 6}, 5, 2.0f);
  Tensor r = RandomTensor({5, 3}, 6);
  Router::Saved saved;
  ASSERT_OK(router.Forward(x, &saved).status());
  ASSERT_OK_AND_ASSIGN(Tensor dx, router.Backward(saved, r, nullptr));
  auto loss = [&]() -> absl::StatusOr<double> {
    absl::StatusOr<Router::Output> o = router.Forward(x, nullptr);
    if (!o.ok()) return o.status();
    if (o->idx != saved.idx) return absl::AbortedError("routing changed");
    return DotDouble(o->weights, r);
  };
  ASSERT_OK_AND_ASSIGN(auto rx, CheckGradient("x", loss, x, dx, {}));
  ASSERT_OK_AND_ASSIGN(auto rw, CheckGradient("wg", loss, router.weight().value, router.weight().grad, {}));
  EXPECT_GT(rx.checked, 20);
  EXPECT_GT(rw.checked, 20);
  // Must-fail twin: dropping the normalisation/softmax coupling term.
  Tensor wrong = router.weight().grad.Clone();
  for (float& g : wrong.span()) g *= -1.0f;
  EXPECT_THAT(CheckGradient("wg", loss, router.weight().value, wrong, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch")));
}

INSTANTIATE_TEST_SUITE_P(ScoreFuncs, RouterGradTest, ::testing::Values(ScoreFunc::kSigmoid, ScoreFunc::kSoftmax));

TEST(RouterTest, BadInputsRejected) {
  ModelConfig c = GroupedConfig();
  std::vector<int32_t> idx(3);
  EXPECT_THAT(SelectExperts(c, std::vector<float>(7), 1, absl::MakeSpan(idx)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 8 scores")));
  c.top_k = 9;
  EXPECT_THAT(SelectExperts(c, std::vector<float>(8), 1, absl::MakeSpan(idx)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  Router router("gate", GroupedConfig());
  EXPECT_THAT(router.Forward(Tensor::Zeros({2, 5}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gate.weight: input")));
}

}  // namespace
}  // namespace tandem::model
