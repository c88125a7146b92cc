// The executor's overhead with the reference model: one training step (2
// ranks = this machine's cores, 8 micro-batches of 128 tokens, hidden 256).
//
//   BM_ModelStep/<kind>   counters step_ms and overhead_pct = time outside
//                         stage compute and communication waits (target < 2%)
#include <thread>

#include "benchmark/benchmark.h"
#include "comm/local/local_communicator.h"
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

void BM_ModelStep(benchmark::State& state, Kind kind) {
  constexpr int kRanks = 2, kTokens = 128;
  const Schedule s = *Lower(*Generate({kind, kRanks, 8}));
  model::ModelConfig c;
  c.hidden = 256;
  c.input_dim = 32;
  c.output_dim = 32;
  c.num_layers = 2 * s.stages - 2;
  c.num_experts = 8;
  c.moe_inter = 256;
  c.top_k = 2;
  const PipelineData data = testing::StepData(c, 8, kTokens);
  std::vector<std::unique_ptr<ModelStageWork>> work;
  for (int r = 0; r < kRanks; ++r) {
    ModelStageWork::Options wo;
    work.push_back(*ModelStageWork::Create(s, r, c, EvenBounds(model::NumUnits(c), s.stages), wo));
    if (!work.back()->SetData(&data).ok()) {
      state.SkipWithError("data");
      return;
    }
  }
  double overhead = 0, step_total = 0, step_ms = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<comm::Communicator>> comms = comm::CreateLocalGroup(kRanks);
    for (auto& w : work) {
      for (auto [st, d] : w->copies()) w->model(st, d)->ZeroGrad();
    }
    std::vector<absl::StatusOr<schedule::RankRun>> runs(kRanks, absl::UnknownError(""));
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] { runs[r] = schedule::RunRank(s, r, *work[r], *comms[r], {}); });
    }
    for (auto& t : threads) t.join();
    double step = 0;
    for (const auto& r : runs) {
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
      overhead += r->step_us - r->compute_us - r->wait_us;
      step_total += r->step_us;
      step = std::max(step, r->step_us);
    }
    step_ms = step / 1000;
    state.SetIterationTime(step / 1e6);
  }
  state.counters["step_ms"] = step_ms;
  state.counters["overhead_pct"] = 100.0 * overhead / step_total;
}

BENCHMARK_CAPTURE(BM_ModelStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ModelStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ModelStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_ModelStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ModelStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ModelStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::train
