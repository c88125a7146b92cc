// Executor overhead on one GPU: a training step of the reference MoE model
// with every rank a cuda_local virtual rank and every stage a GpuModel, and
// the same micro-batches run sequentially through one GpuModel on one
// stream (the step's compute with no pipeline, no communication). The
// virtual ranks share the GPU, so the step cannot beat its compute by
// running ranks in parallel on separate devices; overhead_pct is what the
// executor, the cuda_local messages and the stage bookkeeping add.
//
//   BM_GpuStep/<kind>   4 ranks, 8 micro-batches of 1024 tokens, hidden
//                       1024, 16 experts (top 4), 8 units; counters step_ms,
//                       sequential_ms, overhead_pct (target < 2%)
#include <cuda_runtime.h>

#include <algorithm>
#include <thread>

#include "benchmark/benchmark.h"
#include "comm/cuda_local/cuda_local_communicator.h"
#include "model/cuda/gpu_model.h"
#include "schedule/executor/executor.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "train/model_stage_work.h"
#include "train/testing/step_check.h"

namespace tandem::train {
namespace {

using schedule::Generate;
using schedule::Kind;
using schedule::Lower;
using schedule::RankRun;

constexpr int kRanks = 4, kMicrobatches = 8, kTokens = 1024;

model::ModelConfig Config(int stages) {
  model::ModelConfig c;
  c.hidden = 1024;
  c.input_dim = 256;
  c.output_dim = 256;
  c.num_layers = 2 * stages - 2;
  c.num_experts = 16;
  c.moe_inter = 512;
  c.top_k = 4;
  return c;
}

// Sequential compute of the step on one stream, in milliseconds (median of 5).
double SequentialMs(const model::ModelConfig& c, const PipelineData& data) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  double best = 0;
  {
    auto host = model::Model::Create(c);
    if (!host.ok()) return -1;
    auto gpu = model::cuda::GpuModel::Create(**host, stream);
    if (!gpu.ok()) return -1;
    std::vector<double> ms;
    for (int i = 0; i < 6; ++i) {
      const absl::Time start = absl::Now();
      if (!Sequential(**gpu, data).ok()) return -1;
      cudaStreamSynchronize(stream);
      if (i > 0) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));  // the first warms up
    }
    std::sort(ms.begin(), ms.end());
    best = ms[ms.size() / 2];
  }
  cudaStreamDestroy(stream);
  return best;
}

void BM_GpuStep(benchmark::State& state, Kind kind) {
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
    state.SkipWithError("no GPU visible");
    return;
  }
  const Schedule s = *Lower(*Generate({kind, kRanks, kMicrobatches}));
  const model::ModelConfig c = Config(s.stages);
  const PipelineData data = testing::StepData(c, kMicrobatches, kTokens);
  auto comms = comm::CreateCudaLocalGroup(kRanks);
  if (!comms.ok()) {
    state.SkipWithError(std::string(comms.status().message()).c_str());
    return;
  }
  std::vector<std::unique_ptr<ModelStageWork>> work;
  for (int r = 0; r < kRanks; ++r) {
    cudaStream_t stream = comm::CudaLocalStream(*(*comms)[r]);
    ModelPlacer placer = [stream](model::Model& host) -> absl::StatusOr<std::unique_ptr<model::UnitModel>> {
      auto g = model::cuda::GpuModel::Create(host, stream);
      if (!g.ok()) return g.status();
      return std::unique_ptr<model::UnitModel>(*std::move(g));
    };
    ModelStageWork::Options wo;
    wo.placer = placer;
    auto w = ModelStageWork::Create(s, r, c, EvenBounds(model::NumUnits(c), s.stages), wo);
    const absl::Status st = w.ok() ? (*w)->SetData(&data) : w.status();
    if (!st.ok()) {
      state.SkipWithError(std::string(st.message()).c_str());
      return;
    }
    work.push_back(*std::move(w));
  }
  double step_ms = 0;
  for (auto _ : state) {
    std::vector<absl::StatusOr<RankRun>> runs(kRanks, absl::UnknownError(""));
    std::vector<std::thread> threads;
    const absl::Time start = absl::Now();
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] {
        runs[r] = schedule::RunRank(s, r, *work[r], *(*comms)[r], {});
        cudaStreamSynchronize(comm::CudaLocalStream(*(*comms)[r]));
      });
    }
    for (auto& t : threads) t.join();
    step_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    for (const auto& r : runs) {
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
    }
    state.SetIterationTime(step_ms / 1000);
  }
  const double sequential_ms = SequentialMs(c, data);
  state.counters["step_ms"] = step_ms;
  state.counters["sequential_ms"] = sequential_ms;
  state.counters["overhead_pct"] = 100.0 * (step_ms - sequential_ms) / sequential_ms;
}

BENCHMARK_CAPTURE(BM_GpuStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GpuStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GpuStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GpuStep, dualpipev, Kind::kDualPipeV)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::train
