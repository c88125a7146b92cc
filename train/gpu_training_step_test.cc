// One training step on the GPU: every rank a virtual rank of the cuda_local
// backend (one stream each), every stage copy a GpuModel, activations and
// gradients sent between device buffers. Checked, for every schedule kind,
// against the same model trained sequentially on the GPU: per-micro-batch
// losses bit for bit (the same kernels on the same inputs), gradients with
// DualPipe's 1 - 2 sum(xy) / sum(x^2 + y^2) < 1e-10 (the weight-gradient
// GEMMs accumulate micro-batches in the schedule's order); and against the
// CPU model: losses within 1e-5 relative. Inference gives the same losses.
// Skips without a GPU.
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/cuda_local/cuda_local_communicator.h"
#include "gtest/gtest.h"
#include "model/cuda/gpu_model.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "train/model_stage_work.h"
#include "train/testing/step_check.h"

namespace tandem::train {
namespace {

using schedule::Generate;
using schedule::Kind;
using schedule::KindName;
using schedule::Lower;

TEST(GpuTrainingStepTest, EveryKindOnCudaLocalEqualsSequentialGpuTraining) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const model::ModelConfig c = testing::StepConfig();
  const int n = 4;
  const PipelineData data = testing::StepData(c, n);
  ASSERT_OK_AND_ASSIGN(auto cpu, model::Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::vector<double> cpu_losses, Sequential(*cpu, data));
  ASSERT_OK_AND_ASSIGN(auto reference, model::Model::Create(c));
  ASSERT_OK_AND_ASSIGN(auto reference_gpu, model::cuda::GpuModel::Create(*reference, nullptr));
  ASSERT_OK_AND_ASSIGN(std::vector<double> ref_losses, Sequential(*reference_gpu, data));
  ASSERT_OK(reference_gpu->SyncGradients());
  for (int g = 0; g < n; ++g) EXPECT_LE(std::abs(ref_losses[g] - cpu_losses[g]), 1e-5 * std::abs(cpu_losses[g]));
  for (Kind kind : {Kind::kGPipe, Kind::k1F1B, Kind::kInterleaved1F1B, Kind::kZB1P, Kind::kZBV, Kind::kDualPipe,
                    Kind::kDualPipeV}) {
    SCOPED_TRACE(KindName(kind));
    ASSERT_OK_AND_ASSIGN(Schedule compute, Generate({kind, 2, n}));
    ASSERT_OK_AND_ASSIGN(Schedule s, Lower(compute));
    ASSERT_OK_AND_ASSIGN(std::vector<std::unique_ptr<comm::Communicator>> comms, comm::CreateCudaLocalGroup(s.ranks));
    auto placer = [&](int rank) -> ModelPlacer {
      cudaStream_t stream = comm::CudaLocalStream(*comms[rank]);
      return [stream](model::Model& host) -> absl::StatusOr<std::unique_ptr<model::UnitModel>> {
        TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::cuda::GpuModel> g, model::cuda::GpuModel::Create(host, stream));
        return std::unique_ptr<model::UnitModel>(std::move(g));
      };
    };
    testing::StepResult step = testing::RunStep(s, c, data, comms, /*forward_only=*/false, placer);
    ASSERT_EQ(step.losses.size(), n);
    for (int g = 0; g < n; ++g) EXPECT_EQ(step.losses[g], ref_losses[g]) << "micro-batch " << g;
    testing::ExpectGradientsMatch(s, step, *reference, 1e-10);
    testing::StepResult inference = testing::RunStep(s, c, data, comms, /*forward_only=*/true, placer);
    for (int g = 0; g < n; ++g) EXPECT_EQ(inference.losses[g], ref_losses[g]) << "inference micro-batch " << g;
  }
}

}  // namespace
}  // namespace tandem::train
