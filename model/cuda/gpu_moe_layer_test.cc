// The GPU MoE layer against the CPU MoeLayer. Skips without a GPU.
#include "model/cuda/gpu_moe_layer.h"

#include <algorithm>
#include <cmath>

#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "model/cuda/device.h"
#include "model/init.h"
#include "model/testing/grad_check.h"

namespace tandem::model::cuda {
namespace {

using ::tandem::model::testing::MaxRelativeDifference;
using ::tandem::model::testing::RandomTensor;

ModelConfig Config(ScoreFunc f) {
  ModelConfig c;
  c.hidden = 64;
  c.num_experts = 16;
  c.moe_inter = 32;
  c.num_shared_experts = 1;
  c.top_k = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.score_func = f;
  c.route_scale = 2.5f;
  c.seed = 21;
  return c;
}

struct Case {
  ScoreFunc score;
  DType gemm;
  double tol;
};

class MoeGpuTest : public ::testing::TestWithParam<Case> {};

// Outputs, input gradient and every weight gradient within the stated
// tolerance (f32 GEMMs 1e-4, bf16 3e-2, relative to the largest magnitude);
// the expert selection is identical.
TEST_P(MoeGpuTest, MatchesCpuLayer) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const Case c = GetParam();
  const ModelConfig config = Config(c.score);
  MoeLayer cpu("moe", config, 0);
  cpu.Init();
  InitUniform(9, "bias", 0.05f, cpu.router().bias());
  Tensor x = RandomTensor({128, 64}, 1, 2.0f);
  Tensor dy = RandomTensor({128, 64}, 2);
  MoeLayer::Saved saved;
  ASSERT_OK_AND_ASSIGN(Tensor y_cpu, cpu.Forward(x, &saved));
  ASSERT_OK_AND_ASSIGN(Tensor dx_cpu, cpu.Backward(saved, dy, nullptr));
  ASSERT_OK_AND_ASSIGN(auto gpu, GpuMoeLayer::Create(cpu, config, {c.gemm}, nullptr));
  ASSERT_OK_AND_ASSIGN(Tensor xd, ToDevice(x));
  ASSERT_OK_AND_ASSIGN(Tensor dyd, ToDevice(dy));
  std::shared_ptr<GpuMoeLayer::Saved> sv;
  ASSERT_OK_AND_ASSIGN(Tensor yd, gpu->Forward(xd, &sv));
  EXPECT_EQ(GpuMoeLayer::Selection(*sv), saved.router.idx);
  ASSERT_OK_AND_ASSIGN(Tensor dxd, gpu->Backward(*sv, dyd, nullptr));
  ASSERT_OK_AND_ASSIGN(Tensor y, ToHost(yd));
  ASSERT_OK_AND_ASSIGN(Tensor dx, ToHost(dxd));
  EXPECT_LE(MaxRelativeDifference(y, y_cpu), c.tol);
  EXPECT_LE(MaxRelativeDifference(dx, dx_cpu), c.tol);
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> grads, gpu->DownloadGrads());
  std::vector<Parameter*> params = cpu.dense_parameters();
  for (Parameter* p : cpu.expert_parameters()) params.push_back(p);
  ASSERT_EQ(grads.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_LE(MaxRelativeDifference(grads[i], params[i]->grad), c.tol) << params[i]->name;
  }
  EXPECT_THAT(gpu->Backward(*sv, Tensor::Zeros({128, 64}), nullptr),  // dy on the host
              ::tandem::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("output gradient: expected a device f32")));
}

// Deferred weight gradients (I now, W later) equal the immediate ones bit
// for bit, and nothing accumulates before the store is popped; two forwards
// in flight keep their own saved state.
TEST(MoeGpuSplitTest, DeferredEqualsImmediateWithTwoMicroBatchesInFlight) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const ModelConfig config = Config(ScoreFunc::kSigmoid);
  MoeLayer cpu("moe", config, 0);
  cpu.Init();
  ASSERT_OK_AND_ASSIGN(auto now, GpuMoeLayer::Create(cpu, config, {}, nullptr));
  ASSERT_OK_AND_ASSIGN(auto later, GpuMoeLayer::Create(cpu, config, {}, nullptr));
  ASSERT_OK_AND_ASSIGN(Tensor x0, ToDevice(RandomTensor({96, 64}, 3, 2.0f)));
  ASSERT_OK_AND_ASSIGN(Tensor x1, ToDevice(RandomTensor({96, 64}, 4, 2.0f)));
  ASSERT_OK_AND_ASSIGN(Tensor dy0, ToDevice(RandomTensor({96, 64}, 5)));
  ASSERT_OK_AND_ASSIGN(Tensor dy1, ToDevice(RandomTensor({96, 64}, 6)));
  WeightGradStore store;
  std::vector<Tensor> dx[2];
  for (GpuMoeLayer* g : {now.get(), later.get()}) {
    std::shared_ptr<GpuMoeLayer::Saved> s0, s1;
    ASSERT_OK(g->Forward(x0, &s0).status());
    ASSERT_OK(g->Forward(x1, &s1).status());
    WeightGradStore* st = g == later.get() ? &store : nullptr;
    for (auto [s, dy] : {std::make_pair(s1.get(), &dy1), std::make_pair(s0.get(), &dy0)}) {
      ASSERT_OK_AND_ASSIGN(Tensor d, g->Backward(*s, *dy, st));
      ASSERT_OK_AND_ASSIGN(Tensor host, ToHost(d));
      dx[g == later.get()].push_back(host);
      if (st != nullptr) st->Flush();
    }
  }
  for (int i = 0; i < 2; ++i) EXPECT_EQ(MaxRelativeDifference(dx[0][i], dx[1][i]), 0.0) << "mb " << i;
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> before, later->DownloadGrads());
  for (const Tensor& g : before) {
    for (float v : g.span()) ASSERT_EQ(v, 0.0f);
  }
  ASSERT_OK(store.Pop());
  ASSERT_OK(store.Pop());
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> a, now->DownloadGrads());
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> b, later->DownloadGrads());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(MaxRelativeDifference(a[i], b[i]), 0.0) << "gradient " << i;
}

INSTANTIATE_TEST_SUITE_P(Modes, MoeGpuTest,
                         ::testing::Values(Case{ScoreFunc::kSigmoid, DType::kF32, 1e-4},
                                           Case{ScoreFunc::kSoftmax, DType::kF32, 1e-4},
                                           Case{ScoreFunc::kSigmoid, DType::kBF16, 3e-2}));

}  // namespace
}  // namespace tandem::model::cuda
