// Executor step time in emulated-cost mode (each action waits its cost-model
// time; F=1, B=2, I=1, W=1, FB=3, one unit = 5 ms) on 8 local ranks, 20
// micro-batches, beside the simulator's prediction.
//
//   BM_EmulatedStep/<kind>   counters: measured_ms, simulated_ms,
//                            deviation_pct (target: |deviation| < 5%),
//                            wait_pct (time ranks spent blocked)
//   BM_ModelStep/<kind>      one training step of the reference model (2
//                            ranks = this machine's cores, 8 micro-batches of
//                            128 tokens, hidden 256): overhead_pct = time
//                            outside stage compute and communication waits
//                            (target < 2%)
#include <thread>

#include "benchmark/benchmark.h"
#include "comm/local/local_communicator.h"
#include "schedule/executor/executor.h"
#include "schedule/executor/model_stage_work.h"
#include "schedule/executor/testing/step_check.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {
namespace {

void BM_EmulatedStep(benchmark::State& state, Kind kind) {
  const Schedule s = *Lower(*Generate({kind, 8, 20}));
  CostModel cost;
  cost.fb = {3};
  const absl::Duration unit = absl::Milliseconds(5);
  const double simulated_ms = Simulate(s, {cost})->makespan * absl::ToDoubleMilliseconds(unit);
  double measured_ms = 0, wait = 0, total = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<comm::Communicator>> comms = comm::CreateLocalGroup(8);
    std::vector<EmulatedStageWork> work;
    for (int r = 0; r < 8; ++r) work.emplace_back(s, cost, unit, 1024);
    std::vector<absl::StatusOr<RankRun>> runs(8, absl::UnknownError(""));
    std::vector<std::thread> threads;
    for (int r = 0; r < 8; ++r) threads.emplace_back([&, r] { runs[r] = RunRank(s, r, work[r], *comms[r], {}); });
    for (auto& t : threads) t.join();
    double step = 0;
    for (const auto& r : runs) {
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
      step = std::max(step, r->step_us / 1000.0);
      wait += r->wait_us;
      total += r->step_us;
    }
    measured_ms = step;
    state.SetIterationTime(step / 1000.0);
  }
  state.counters["measured_ms"] = measured_ms;
  state.counters["simulated_ms"] = simulated_ms;
  state.counters["deviation_pct"] = 100.0 * (measured_ms - simulated_ms) / simulated_ms;
  state.counters["wait_pct"] = 100.0 * wait / total;
}

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
    work.push_back(*ModelStageWork::Create(s, r, c, EvenBounds(c.num_layers + 2, s.stages), &data, false));
  }
  double overhead = 0, step_total = 0, step_ms = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<comm::Communicator>> comms = comm::CreateLocalGroup(kRanks);
    for (auto& w : work) {
      for (auto [st, d] : w->copies()) w->model(st, d)->ZeroGrad();
    }
    std::vector<absl::StatusOr<RankRun>> runs(kRanks, absl::UnknownError(""));
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] { runs[r] = RunRank(s, r, *work[r], *comms[r], {}); });
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

BENCHMARK_CAPTURE(BM_EmulatedStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::schedule
