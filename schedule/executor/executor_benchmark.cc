// Executor step time in emulated-cost mode (each action waits its cost-model
// time; F=1, B=2, I=1, W=1, FB=3, one unit = 5 ms) on 8 local ranks, 20
// micro-batches, beside the simulator's prediction.
//
//   BM_EmulatedStep/<kind>   counters: measured_ms, simulated_ms,
//                            deviation_pct (target: |deviation| < 5%),
//                            wait_pct (time ranks spent blocked)
// The executor's overhead with the reference model is
// //train:training_step_benchmark.
#include <thread>

#include "benchmark/benchmark.h"
#include "comm/local/local_communicator.h"
#include "schedule/executor/executor.h"
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

BENCHMARK_CAPTURE(BM_EmulatedStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::schedule
