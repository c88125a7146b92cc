// GPU benchmarks of the reference model (H100 target). Exits 0 with a note
// when no GPU is visible.
//
//   BM_ExpertGemm/<dtype>   one grouped expert GEMM (tokens x 7168 -> 2048
//                           per expert, 32 experts): TFLOP/s and the share
//                           of the dense bf16 peak (990 TFLOP/s, H100 SXM)
//   BM_MoeBlock/<dtype>     forward + backward of a DeepSeek-V3-width MoE
//                           layer (hidden 7168, expert FFN 2048, top-8,
//                           8 groups / 4 kept, 1 shared expert) scaled down
//                           to 32 routed experts so weights, gradients and
//                           activations fit one GPU; tokens/s and TFLOP/s
#include <cstdio>
#include <vector>

#include "base/cuda_check.h"
#include "benchmark/benchmark.h"
#include "model/cuda/device.h"
#include "model/cuda/gemm.h"
#include "model/cuda/gpu_moe_layer.h"
#include "model/testing/grad_check.h"

namespace tandem::model::cuda {
namespace {

constexpr double kPeakBf16 = 990e12;

// Runs `body` once per iteration between CUDA events; sets the manual
// iteration time and returns the total seconds.
template <typename Body>
double TimeIterations(benchmark::State& state, Body body) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double seconds = 0;
  for (auto _ : state) {
    cudaEventRecord(start);
    if (!body()) state.SkipWithError("benchmark body failed");
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
    seconds += ms / 1e3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return seconds;
}

void BM_ExpertGemm(benchmark::State& state) {
  const DType dt = state.range(0) == 0 ? DType::kBF16 : DType::kF32;
  const int64_t experts = 32, rows = state.range(1), h = 7168, f = 2048;
  auto blas = Blas::Create(nullptr).value();
  Tensor x = DeviceZeros({experts * rows, h}, dt).value();
  Tensor w = DeviceZeros({experts, f, h}, dt).value();
  Tensor y = DeviceZeros({experts * rows, f}, DType::kF32).value();
  std::vector<GemmGroup> groups;
  const int64_t es = SizeOf(dt);
  for (int64_t e = 0; e < experts; ++e) {
    groups.push_back({{false, true, rows, f, h},
                      static_cast<char*>(x.raw()) + e * rows * h * es,
                      static_cast<char*>(w.raw()) + e * f * h * es,
                      y.data<float>() + e * rows * f});
  }
  const double seconds = TimeIterations(state, [&] { return blas->GroupedGemm(groups, dt, 1, 0).ok(); });
  const double flops = 2.0 * experts * rows * h * f * state.iterations();
  state.counters["TFLOP/s"] = flops / seconds / 1e12;
  state.counters["of_bf16_peak_%"] = 100.0 * flops / seconds / kPeakBf16;
}
BENCHMARK(BM_ExpertGemm)
    ->Args({0, 512})
    ->Args({0, 2048})
    ->Args({1, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_MoeBlock(benchmark::State& state) {
  const DType dt = state.range(0) == 0 ? DType::kBF16 : DType::kF32;
  const int64_t tokens = state.range(1);
  ModelConfig c;
  c.hidden = 7168;
  c.moe_inter = 2048;
  c.num_experts = 32;
  c.num_shared_experts = 1;
  c.top_k = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.route_scale = 2.5f;
  MoeLayer cpu("moe", c, 0);
  cpu.Init();
  auto gpu = GpuMoeLayer::Create(cpu, c, {dt}, nullptr).value();
  Tensor x = ToDevice(testing::RandomTensor({tokens, c.hidden}, 1)).value();
  Tensor dy = ToDevice(testing::RandomTensor({tokens, c.hidden}, 2, 1e-3f)).value();
  const double seconds = TimeIterations(state, [&] {
    std::shared_ptr<GpuMoeLayer::Saved> saved;
    return gpu->Forward(x, &saved).ok() && gpu->Backward(*saved, dy, nullptr).ok();
  });
  // Forward 3 GEMMs per expert row and per shared row; backward twice that.
  const double per_token = 3.0 * 2.0 * c.hidden * c.moe_inter * (c.top_k + c.num_shared_experts) * 3.0;
  state.counters["tokens/s"] = tokens * state.iterations() / seconds;
  state.counters["TFLOP/s"] = per_token * tokens * state.iterations() / seconds / 1e12;
}
BENCHMARK(BM_MoeBlock)->Args({0, 4096})->Args({1, 1024})->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::model::cuda

int main(int argc, char** argv) {
  if (tandem::VisibleGpuCount() == 0) {
    std::printf("gpu_moe_layer_benchmark: no GPU visible: skipped\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
