#include "model/stage.h"

#include <cstring>
#include <memory>
#include <vector>

#include "balance/load_recorder.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::CheckGradient;
using ::tandem::model::testing::GradCheckOptions;
using ::tandem::model::testing::GradCheckReport;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

ModelConfig SmallConfig(LossKind loss) {
  ModelConfig c;
  c.input_dim = 5;
  c.hidden = 8;
  c.output_dim = 4;
  c.num_layers = 3;
  c.num_dense_layers = 1;
  c.dense_inter = 12;
  c.num_experts = 8;
  c.moe_inter = 6;
  c.top_k = 2;
  c.n_group = 2;
  c.topk_group = 1;
  c.loss = loss;
  c.seed = 17;
  return c;
}

Target MakeTarget(const ModelConfig& c, int64_t tokens, uint64_t seed) {
  Target t;
  t.values = RandomTensor({tokens, c.output_dim}, seed);
  for (int64_t i = 0; i < tokens; ++i) t.labels.push_back(static_cast<int32_t>((i * 7 + seed) % c.output_dim));
  return t;
}

uint64_t Fingerprint(Model& m) {
  uint64_t h = 0;
  for (MoeLayer* l : m.moe_layers()) h = h * 31 + l->routing_fingerprint();
  return h;
}

class WholeModelGradTest : public ::testing::TestWithParam<LossKind> {};

// The whole model (input projection, dense block, MoE blocks, head, loss)
// against finite differences: the input and every parameter tensor
// (f32: eps 1e-2, rtol 3e-2, atol 2e-3; coordinates whose perturbation
// changes any routing are skipped).
TEST_P(WholeModelGradTest, GradientsMatchFiniteDifferences) {
  ModelConfig c = SmallConfig(GetParam());
  ASSERT_OK_AND_ASSIGN(auto model, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(auto stage, Stage::Create(model.get(), 0, model->num_units(), {}));
  Tensor x = RandomTensor({6, 5}, 3, 2.0f);
  Target target = MakeTarget(c, 6, 4);
  ASSERT_OK(stage->Forward(0, x, &target).status());
  const uint64_t routing = Fingerprint(*model);
  ASSERT_OK_AND_ASSIGN(Tensor dx, stage->Backward(0, Tensor()));
  int mb = 1;
  auto loss = [&]() -> absl::StatusOr<double> {
    absl::StatusOr<Tensor> l = stage->Forward(mb, x, &target);
    if (!l.ok()) return l.status();
    absl::StatusOr<double> v = stage->loss(mb);
    ++mb;
    if (Fingerprint(*model) != routing) return absl::AbortedError("routing changed");
    return v;
  };
  GradCheckOptions opt;
  opt.rtol = 3e-2;
  opt.atol = 2e-3;
  opt.max_coords = 24;
  ASSERT_OK_AND_ASSIGN(GradCheckReport rx, CheckGradient("input", loss, x, dx, opt));
  EXPECT_GT(rx.checked, 15);
  int checked = 0;
  for (Parameter* p : model->Parameters()) {
    opt.max_coords = 6;
    ASSERT_OK_AND_ASSIGN(GradCheckReport r, CheckGradient(p->name, loss, p->value, p->grad, opt));
    checked += r.checked;
  }
  EXPECT_GT(checked, 150);
}

// Must-fail twin: a gradient of the wrong sign on one parameter is caught.
TEST_P(WholeModelGradTest, CorruptedGradientFailsCheck) {
  ModelConfig c = SmallConfig(GetParam());
  ASSERT_OK_AND_ASSIGN(auto model, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(auto stage, Stage::Create(model.get(), 0, model->num_units(), {}));
  Tensor x = RandomTensor({6, 5}, 3, 2.0f);
  Target target = MakeTarget(c, 6, 4);
  ASSERT_OK(stage->Forward(0, x, &target).status());
  ASSERT_OK(stage->Backward(0, Tensor()).status());
  Parameter* head = model->Parameters().back();
  for (float& g : head->grad.span()) g = -g;
  int mb = 1;
  auto loss = [&]() -> absl::StatusOr<double> {
    const int m = mb++;
    absl::StatusOr<Tensor> l = stage->Forward(m, x, &target);
    if (!l.ok()) return l.status();
    return stage->loss(m);
  };
  EXPECT_THAT(CheckGradient(head->name, loss, head->value, head->grad, {}).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("gradient mismatch at head.weight")));
}

INSTANTIATE_TEST_SUITE_P(Losses, WholeModelGradTest, ::testing::Values(LossKind::kMse, LossKind::kCrossEntropy));

struct RunResult {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;
};

RunResult Collect(Model& m, std::vector<double> losses) {
  RunResult r;
  r.losses = std::move(losses);
  for (Parameter* p : m.Parameters()) {
    r.grads.emplace_back(p->grad.data<float>(), p->grad.data<float>() + p->grad.numel());
  }
  return r;
}

constexpr int kMicroBatches = 4;

// The reference: each micro-batch through the one-stage model, F then B.
RunResult Reference(const ModelConfig& c, const std::vector<Tensor>& xs, const std::vector<Target>& ts) {
  auto model = Model::Create(c).value();
  auto stage = Stage::Create(model.get(), 0, model->num_units(), {}).value();
  std::vector<double> losses;
  for (int mb = 0; mb < kMicroBatches; ++mb) {
    EXPECT_OK(stage->Forward(mb, xs[mb], &ts[mb]).status());
    losses.push_back(stage->loss(mb).value());
    EXPECT_OK(stage->Backward(mb, Tensor()).status());
  }
  return Collect(*model, losses);
}

void ExpectSameBits(const RunResult& a, const RunResult& b) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << "mb " << i;
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_EQ(std::memcmp(a.grads[i].data(), b.grads[i].data(), a.grads[i].size() * 4), 0) << "param " << i;
  }
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = SmallConfig(LossKind::kMse);
    for (int mb = 0; mb < kMicroBatches; ++mb) {
      xs_.push_back(RandomTensor({5, 5}, 100 + mb, 2.0f));
      ts_.push_back(MakeTarget(config_, 5, 200 + mb));
    }
    reference_ = Reference(config_, xs_, ts_);
    model_ = Model::Create(config_).value();
    // Units: 0 input, 1 dense block, 2-3 MoE blocks, 4 head.
    const int bounds[] = {0, 2, 3, 5};
    for (int s = 0; s < 3; ++s) {
      stages_.push_back(Stage::Create(model_.get(), bounds[s], bounds[s + 1], {&store_, true}).value());
    }
  }
  // Forward of mb through all stages, handing activations along as buffers.
  void ForwardAll(int mb) {
    Tensor h = xs_[mb];
    for (auto& s : stages_) h = s->Forward(mb, h, s->is_last() ? &ts_[mb] : nullptr).value();
  }
  ModelConfig config_;
  std::vector<Tensor> xs_;
  std::vector<Target> ts_;
  RunResult reference_;
  std::unique_ptr<Model> model_;
  WeightGradStore store_;
  std::vector<std::unique_ptr<Stage>> stages_;
};

// All forwards, then split backwards (I) in order, then the W units (FIFO,
// oldest first): the same losses and gradients, bit for bit.
TEST_F(PipelineTest, SplitBackwardMatchesReferenceBitForBit) {
  for (int mb = 0; mb < kMicroBatches; ++mb) ForwardAll(mb);
  EXPECT_EQ(stages_[1]->live_microbatches(), kMicroBatches);
  for (int mb = 0; mb < kMicroBatches; ++mb) {
    Tensor g;
    for (int s = 2; s >= 0; --s) g = stages_[s]->BackwardInput(mb, g).value();
    EXPECT_EQ(g.dim(1), config_.input_dim);  // the first stage returns d(input)
  }
  EXPECT_EQ(stages_[1]->live_microbatches(), 0);  // activations released
  EXPECT_EQ(store_.size(), 3u * kMicroBatches);
  for (Parameter* p : model_->Parameters()) {
    for (float v : p->grad.span()) ASSERT_EQ(v, 0.0f) << p->name;  // all deferred
  }
  for (int i = 0; i < 3 * kMicroBatches; ++i) ASSERT_OK(stages_[0]->BackwardWeight());
  std::vector<double> losses;
  for (int mb = 0; mb < kMicroBatches; ++mb) losses.push_back(stages_[2]->loss(mb).value());
  ExpectSameBits(reference_, Collect(*model_, losses));
}

// A 1F1B-style schedule where stage s pairs F(i) with B(i - S + s) in one
// ForwardBackward call (interleaved; nothing to overlap without EP). Backwards stay in micro-batch order
// per stage, so losses and gradients equal the reference bit for bit.
TEST_F(PipelineTest, OverlappedForwardBackwardMatchesReference) {
  const int num_stages = 3;
  // inputs[s][mb]: the input of stage s; grads[s][mb]: d(output of s).
  std::vector<std::vector<Tensor>> inputs(num_stages, std::vector<Tensor>(kMicroBatches));
  std::vector<std::vector<Tensor>> grads(num_stages, std::vector<Tensor>(kMicroBatches));
  inputs[0] = xs_;
  int pairs = 0;
  for (int i = 0; i < kMicroBatches + num_stages; ++i) {
    for (int s = 0; s < num_stages; ++s) {
      const int f = i < kMicroBatches ? i : -1;
      const int b = i - num_stages + s;
      const bool has_b = b >= 0 && b < kMicroBatches;
      Stage& st = *stages_[s];
      const Target* t = st.is_last() && f >= 0 ? &ts_[f] : nullptr;
      Tensor out, in_grad;
      if (f >= 0 && has_b) {
        ASSERT_OK_AND_ASSIGN(ForwardBackwardResult r, ForwardBackward(st, f, inputs[s][f], t, st, b, grads[s][b]));
        out = r.output;
        in_grad = r.input_grad;
        ++pairs;
      } else if (f >= 0) {
        ASSERT_OK_AND_ASSIGN(out, st.Forward(f, inputs[s][f], t));
      } else if (has_b) {
        ASSERT_OK_AND_ASSIGN(in_grad, st.Backward(b, grads[s][b]));
      }
      if (f >= 0 && s + 1 < num_stages) inputs[s + 1][f] = out;
      if (has_b && s > 0) grads[s - 1][b] = in_grad;
      if (has_b) inputs[s][b] = Tensor();  // the executor frees its buffers too
    }
  }
  EXPECT_GE(pairs, 3);
  for (auto& st : stages_) EXPECT_EQ(st->live_microbatches(), 0);
  std::vector<double> losses;
  for (int mb = 0; mb < kMicroBatches; ++mb) losses.push_back(stages_[2]->loss(mb).value());
  ExpectSameBits(reference_, Collect(*model_, losses));
}

// Must-fail twin of the bitwise checks: W units popped newest first
// accumulate gradients in another order; the check notices the change in
// at least one parameter (or, if every sum happens to round the same, the
// losses still match: the comparison is not vacuous either way).
TEST_F(PipelineTest, ReorderedMicroBatchesChangeBits) {
  std::swap(xs_[0], xs_[1]);
  std::swap(ts_[0], ts_[1]);
  for (int mb = 0; mb < kMicroBatches; ++mb) ForwardAll(mb);
  for (int mb = 0; mb < kMicroBatches; ++mb) {
    Tensor g;
    for (int s = 2; s >= 0; --s) g = stages_[s]->Backward(mb, g).value();
  }
  std::vector<double> losses;
  for (int mb = 0; mb < kMicroBatches; ++mb) losses.push_back(stages_[2]->loss(mb).value());
  EXPECT_NE(losses[0], reference_.losses[0]);
  EXPECT_EQ(losses[0], reference_.losses[1]);
}

// Measured unit costs (for plan/partition.h): one positive time per unit.
TEST_F(PipelineTest, MeasuredUnitCosts) {
  ASSERT_OK_AND_ASSIGN(std::vector<double> costs, MeasureUnitCosts(*model_, xs_[0], ts_[0], 3));
  ASSERT_EQ(costs.size(), 5u);
  for (double c : costs) EXPECT_GT(c, 0.0);
  EXPECT_THAT(MeasureUnitCosts(*model_, xs_[0], ts_[0], 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeats")));
  EXPECT_THAT(MeasureUnitCosts(*model_, Tensor::Zeros({5, 2}), ts_[0], 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input_proj")));
}

// The MoE layers of a model feed one load recorder, one row per MoE layer.
TEST_F(PipelineTest, LoadRecorderSeesEveryRoutedToken) {
  ASSERT_OK_AND_ASSIGN(auto recorder, balance::LoadRecorder::Create({2, 8, 4, 0.5}));
  model_->SetLoadRecorder(recorder.get());
  ForwardAll(0);
  ForwardAll(1);
  recorder->EndStep();
  balance::LoadRecorder::Snapshot snap = recorder->TakeSnapshot();
  for (int layer = 0; layer < 2; ++layer) {
    int64_t sum = 0;
    for (int e = 0; e < 8; ++e) sum += snap.window[layer * 8 + e];
    EXPECT_EQ(sum, 2 * 5 * config_.top_k) << "layer " << layer;
  }
}

TEST_F(PipelineTest, MisuseRejected) {
  Stage& first = *stages_[0];
  EXPECT_THAT(first.Backward(0, Tensor()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no saved forward")));
  ASSERT_OK(first.Forward(0, xs_[0]).status());
  EXPECT_THAT(first.Forward(0, xs_[0]).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already has a saved forward")));
  EXPECT_THAT(
      first.Forward(1, Tensor::Zeros({5, 7})).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage [0, 2) forward mb 1: input_proj.weight: input")));
  EXPECT_THAT(stages_[2]->Forward(0, Tensor::Zeros({5, 8})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a target")));
  EXPECT_THAT(first.BackwardWeight(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no queued unit")));
  EXPECT_THAT(ForwardBackward(first, 0, xs_[0], nullptr, first, 0, Tensor()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("two micro-batches")));
  EXPECT_THAT(Stage::Create(model_.get(), 3, 3, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 0 <= begin < end <= 5")));
  // A bad output gradient fails the backward and queues no partial unit.
  ASSERT_OK(stages_[1]->Forward(0, Tensor::Zeros({5, 8})).status());
  EXPECT_THAT(stages_[1]->BackwardInput(0, Tensor::Zeros({4, 8})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output gradient")));
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_EQ(store_.pending(), 0u);
}

}  // namespace
}  // namespace tandem::model
