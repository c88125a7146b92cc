// The GPU MoE layer against the CPU MoeLayer. Skips without a GPU.
#include "model/cuda/moe_gpu.h"

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
  ASSERT_OK_AND_ASSIGN(Tensor yd, gpu->Forward(xd));
  EXPECT_EQ(gpu->last_idx(), saved.router.idx);
  ASSERT_OK_AND_ASSIGN(Tensor dxd, gpu->Backward(dyd));
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
  EXPECT_FALSE(gpu->Backward(dyd).ok());  // one backward per forward
}

INSTANTIATE_TEST_SUITE_P(Modes, MoeGpuTest,
                         ::testing::Values(Case{ScoreFunc::kSigmoid, DType::kF32, 1e-4},
                                           Case{ScoreFunc::kSoftmax, DType::kF32, 1e-4},
                                           Case{ScoreFunc::kSigmoid, DType::kBF16, 3e-2}));

}  // namespace
}  // namespace tandem::model::cuda
