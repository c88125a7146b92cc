// The GPU model against the CPU model, through the same Stage. Skips
// without a GPU.
#include "model/cuda/gpu_model.h"

#include <cmath>
#include <memory>
#include <vector>

#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "model/stage.h"
#include "model/testing/grad_check.h"

namespace tandem::model::cuda {
namespace {

using ::tandem::model::testing::MaxRelativeDifference;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;

ModelConfig Config() {
  ModelConfig c;
  c.num_layers = 3;
  c.num_dense_layers = 1;  // one dense block, two MoE blocks
  c.seed = 11;
  return c;
}

// Two micro-batches through a whole-model stage: losses within 1e-5
// (relative), every gradient within 1e-4 of the largest magnitude (f32
// GEMMs on the GPU sum in another order than the CPU).
TEST(GpuModelTest, MatchesCpuModelThroughAStage) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const ModelConfig c = Config();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> cpu, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> host, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GpuModel> gpu, GpuModel::Create(*host, nullptr));
  ASSERT_OK_AND_ASSIGN(auto cpu_stage, Stage::Create(cpu.get(), 0, cpu->num_units(), {}));
  ASSERT_OK_AND_ASSIGN(auto gpu_stage, Stage::Create(gpu.get(), 0, gpu->num_units(), {}));
  for (int mb = 0; mb < 2; ++mb) {
    Tensor x = RandomTensor({24, c.input_dim}, 30 + mb, 2.0f);
    Target t;
    t.values = RandomTensor({24, c.output_dim}, 40 + mb);
    ASSERT_OK(cpu_stage->Forward(mb, x, &t).status());
    ASSERT_OK(gpu_stage->Forward(mb, x, &t).status());
    ASSERT_OK_AND_ASSIGN(double want, cpu_stage->loss(mb));
    ASSERT_OK_AND_ASSIGN(double got, gpu_stage->loss(mb));
    EXPECT_LE(std::abs(got - want), 1e-5 * std::abs(want)) << "mb " << mb;
  }
  for (int mb = 0; mb < 2; ++mb) {
    ASSERT_OK(cpu_stage->Backward(mb, Tensor()).status());
    ASSERT_OK(gpu_stage->Backward(mb, Tensor()).status());
  }
  ASSERT_OK(gpu->SyncGradients());
  std::vector<Parameter*> want = cpu->Parameters(), got = host->Parameters();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_LE(MaxRelativeDifference(got[i]->grad, want[i]->grad), 1e-4) << want[i]->name;
  }
}

// I then W (deferred through the stage's store) gives the same gradients,
// bit for bit, as B; before W runs, no weight gradient has moved and a
// reload is refused.
TEST(GpuModelTest, DeferredWeightGradientsEqualImmediate) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const ModelConfig c = Config();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> host_b, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> host_iw, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GpuModel> b, GpuModel::Create(*host_b, nullptr));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GpuModel> iw, GpuModel::Create(*host_iw, nullptr));
  ASSERT_OK_AND_ASSIGN(auto sb, Stage::Create(b.get(), 0, NumUnits(c), {}));
  ASSERT_OK_AND_ASSIGN(auto siw, Stage::Create(iw.get(), 0, NumUnits(c), {}));
  Tensor x = RandomTensor({16, c.input_dim}, 3, 2.0f);
  Target t;
  t.values = RandomTensor({16, c.output_dim}, 4);
  ASSERT_OK(sb->Forward(0, x, &t).status());
  ASSERT_OK(siw->Forward(0, x, &t).status());
  ASSERT_OK(sb->Backward(0, Tensor()).status());
  ASSERT_OK(siw->BackwardInput(0, Tensor()).status());
  ASSERT_OK(iw->SyncGradients());
  for (Parameter* p : host_iw->Parameters()) {
    for (float v : p->grad.span()) ASSERT_EQ(v, 0.0f) << p->name;
  }
  EXPECT_THAT(iw->ReloadParameters(),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::HasSubstr("not run yet")));
  ASSERT_OK(siw->BackwardWeight());
  ASSERT_OK(b->SyncGradients());
  ASSERT_OK(iw->SyncGradients());
  std::vector<Parameter*> want = host_b->Parameters(), got = host_iw->Parameters();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(MaxRelativeDifference(got[i]->grad, want[i]->grad), 0.0) << want[i]->name;
  }
  // Once W ran, a reload is allowed and zeroes the device gradients.
  ASSERT_OK(iw->ReloadParameters());
  ASSERT_OK(iw->SyncGradients());
  for (Parameter* p : host_iw->Parameters()) {
    for (float v : p->grad.span()) ASSERT_EQ(v, 0.0f) << p->name;
  }
}

TEST(GpuModelTest, BadInputIsAnError) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const ModelConfig c = Config();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> host, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GpuModel> gpu, GpuModel::Create(*host, nullptr));
  EXPECT_THAT(gpu->UnitForward(1, Tensor::Zeros({4, c.hidden}), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("expected a device f32")));
  EXPECT_THAT(gpu->UnitForward(7, Tensor::Zeros({4, c.hidden}), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("unit: expected a value in [0, 5)")));
}

}  // namespace
}  // namespace tandem::model::cuda
