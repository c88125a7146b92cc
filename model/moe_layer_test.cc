#include "model/moe_layer.h"

#include <cstring>
#include <memory>

#include "balance/load_recorder.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::DotDouble;
using ::tandem::model::testing::GradCheckReport;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

ModelConfig Config(ScoreFunc f = ScoreFunc::kSigmoid) {
  ModelConfig c;
  c.hidden = 8;
  c.num_experts = 8;
  c.moe_inter = 6;
  c.num_shared_experts = 1;
  c.top_k = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.score_func = f;
  c.route_scale = 1.5f;
  c.seed = 9;
  return c;
}

// The layer output is, token by token and bit for bit, the definition:
// y_t = shared(x_t) + (0 + w_0 E_{e0}(x_t) + w_1 E_{e1}(x_t) + ...).
TEST(MoeLayerTest, ForwardEqualsDefinitionBitForBit) {
  MoeLayer layer("moe", Config(), 0);
  layer.Init();
  Tensor x = RandomTensor({7, 8}, 1, 2.0f);
  ASSERT_OK_AND_ASSIGN(Tensor y, layer.Forward(x, nullptr));
  for (int64_t t = 0; t < 7; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor xt, Tensor::FromVector({1, 8}, absl::MakeSpan(x.data<float>() + t * 8, 8)));
    ASSERT_OK_AND_ASSIGN(Router::Output r, layer.router().Forward(xt, nullptr));
    std::vector<float> want(8, 0.0f);
    for (int k = 0; k < 3; ++k) {
      ASSERT_OK_AND_ASSIGN(Tensor o, layer.expert(r.idx[k]).Forward(xt, nullptr));
      for (int c = 0; c < 8; ++c) want[c] += r.weights.data<float>()[k] * o.data<float>()[c];
    }
    ASSERT_OK_AND_ASSIGN(Tensor s, layer.shared()->Forward(xt, nullptr));
    for (int c = 0; c < 8; ++c) want[c] += s.data<float>()[c];
    EXPECT_EQ(std::memcmp(want.data(), y.data<float>() + t * 8, 32), 0) << "token " << t;
  }
}

class MoeGradTest : public ::testing::TestWithParam<ScoreFunc> {};

// dx, gate, shared and every expert weight against finite differences
// (f32, eps 1e-2, rtol 2e-2, atol 1e-3; routing flips skipped).
TEST_P(MoeGradTest, GradientsMatchFiniteDifferences) {
  MoeLayer layer("moe", Config(GetParam()), 0);
  layer.Init();
  Tensor x = RandomTensor({6, 8}, 2, 2.0f);
  Tensor r = RandomTensor({6, 8}, 3);
  MoeLayer::Saved saved;
  ASSERT_OK(layer.Forward(x, &saved).status());
  WeightGradStore store;
  ASSERT_OK_AND_ASSIGN(Tensor dx, layer.Backward(saved, r, &store));
  store.Flush();
  ASSERT_OK(store.Pop());
  const std::vector<int32_t> idx = saved.router.idx;
  auto loss = [&]() -> absl::StatusOr<double> {
    MoeLayer::Saved s;
    absl::StatusOr<Tensor> y = layer.Forward(x, &s);
    if (!y.ok()) return y.status();
    if (s.router.idx != idx) return absl::AbortedError("routing changed");
    return DotDouble(*y, r);
  };
  ASSERT_OK_AND_ASSIGN(GradCheckReport rep, CheckGradient("x", loss, x, dx, {}));
  EXPECT_GT(rep.checked, 30);
  std::vector<Parameter*> params = layer.dense_parameters();
  for (Parameter* p : layer.expert_parameters()) params.push_back(p);
  int nonzero = 0;
  for (Parameter* p : params) {
    EXPECT_OK(CheckGradient(p->name, loss, p->value, p->grad, {}).status());
    for (float g : p->grad.span()) nonzero += g != 0.0f;
  }
  EXPECT_GT(nonzero, 100);
}

// Must-fail twin: an expert gradient not scaled by its gate weight fails.
TEST_P(MoeGradTest, CorruptedExpertGradientFailsCheck) {
  MoeLayer layer("moe", Config(GetParam()), 0);
  layer.Init();
  Tensor x = RandomTensor({6, 8}, 2, 2.0f);
  Tensor r = RandomTensor({6, 8}, 3);
  MoeLayer::Saved saved;
  ASSERT_OK(layer.Forward(x, &saved).status());
  ASSERT_OK(layer.Backward(saved, r, nullptr).status());
  Parameter* w2 = layer.expert(saved.router.idx[0]).parameters()[1];
  for (float& g : w2->grad.span()) g *= 1.0f / 0.3f;
  auto loss = [&]() -> absl::StatusOr<double> {
    absl::StatusOr<Tensor> y = layer.Forward(x, nullptr);
    if (!y.ok()) return y.status();
    return DotDouble(*y, r);
  };
  EXPECT_THAT(CheckGradient(w2->name, loss, w2->value, w2->grad, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch")));
}

INSTANTIATE_TEST_SUITE_P(ScoreFuncs, MoeGradTest, ::testing::Values(ScoreFunc::kSigmoid, ScoreFunc::kSoftmax));

// Counts feed the load recorder and the bias update:
// b_e += speed * sign(mean - c_e).
TEST(MoeLayerTest, CountsRecorderAndBiasUpdate) {
  ModelConfig c = Config();
  c.bias_update_speed = 0.25f;
  MoeLayer layer("moe", c, 1);
  layer.Init();
  ASSERT_OK_AND_ASSIGN(auto recorder, balance::LoadRecorder::Create({2, 8, 10, 0.5}));  // 2 MoE layers
  layer.SetRecorder(recorder.get());
  MoeLayer::Saved saved;
  ASSERT_OK(layer.Forward(RandomTensor({20, 8}, 4, 2.0f), &saved).status());
  std::vector<int64_t> want(8, 0);
  for (int32_t e : saved.router.idx) ++want[e];
  EXPECT_EQ(layer.counts(), want);
  recorder->EndStep();
  balance::LoadRecorder::Snapshot snap = recorder->TakeSnapshot();
  for (int e = 0; e < 8; ++e) {
    EXPECT_EQ(snap.window[8 + e], want[e]);
    EXPECT_EQ(snap.window[e], 0);
  }
  ASSERT_OK(layer.UpdateBias());
  const double mean = 20.0 * 3 / 8;
  for (int e = 0; e < 8; ++e) {
    const float b = layer.router().bias().data<float>()[e];
    EXPECT_EQ(b, want[e] < mean ? 0.25f : want[e] > mean ? -0.25f : 0.0f) << e;
    EXPECT_EQ(layer.counts()[e], 0);
  }
}

// Bias updates balance a skewed load over steps.
TEST(MoeLayerTest, BiasUpdatesReduceImbalance) {
  ModelConfig c = Config();
  c.bias_update_speed = 0.02f;
  c.n_group = 1;
  c.topk_group = 1;
  MoeLayer layer("moe", c, 0);
  layer.Init();
  Tensor x = RandomTensor({64, 8}, 5, 1.0f);
  for (int i = 0; i < 8; ++i) x.data<float>()[i] += 3.0f;  // skew
  auto imbalance = [&] {
    const std::vector<int64_t>& n = layer.counts();
    return *std::max_element(n.begin(), n.end()) * 8.0 / (64 * 3);
  };
  ASSERT_OK(layer.Forward(x, nullptr).status());
  const double first = imbalance();
  for (int step = 0; step < 60; ++step) {
    ASSERT_OK(layer.UpdateBias());
    ASSERT_OK(layer.Forward(x, nullptr).status());
  }
  EXPECT_LT(imbalance(), first);
  EXPECT_LT(imbalance(), 1.6);
}

TEST(MoeLayerTest, ShapeMismatchRejected) {
  MoeLayer layer("moe", Config(), 0);
  EXPECT_THAT(layer.Forward(Tensor::Zeros({3, 7}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("moe: input: expected shape [T, 8], got [3, 7]")));
  MoeLayer::Saved saved;
  ASSERT_OK(layer.Forward(Tensor::Zeros({3, 8}), &saved).status());
  EXPECT_THAT(layer.Backward(saved, Tensor::Zeros({2, 8}), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output gradient")));
}

}  // namespace
}  // namespace tandem::model
