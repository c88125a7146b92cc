// Executor step time in emulated-cost mode (each action waits its cost-model
// time; F=1, B=2, I=1, W=1, FB=3, one unit = 5 ms) on 8 local ranks, 20
// micro-batches, beside the simulator's prediction.
//
//   BM_EmulatedStep/<kind>   counters: measured_ms, simulated_ms,
//                            deviation_pct (target: |deviation| < 5%),
//                            wait_pct (time ranks spent blocked)
//   BM_PhasedStep/<kind>     4 pipeline x 2 expert-parallel ranks (8 threads)
//                            on an emulated network, every action its MoE
//                            phases (compute sleeps; all-to-alls over an
//                            EP link of 50 us + 1.4 ms per exchange),
//                            8 micro-batches of a 16-MoE-layer model:
//                            measured_ms against the simulator's phase model
//                            (target: within 10%), and which kind wins.
// The executor's overhead with the reference model is
// //train:training_step_benchmark.
#include <thread>

#include "benchmark/benchmark.h"
#include "comm/emulated/emulated_network.h"
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

// The phases of one stage of `layers` MoE layers, in the order of the
// model's passes (model/moe_layer.h): forward per layer router, post the
// count exchange, post the rows, shared expert, experts, post the combine,
// residual; backward per layer (last first) post dy, shared expert, experts,
// post the combine of dx, expert weight gradients, router and norm. I is B
// without the weight gradients; W computes them. Times in microseconds.
PhaseCosts MoePhases(int layers) {
  constexpr double kRouter = 300, kShared = 500, kExperts = 1400, kSum = 200, kWeights = 1000;
  // A slow link and few bytes: the modeled time of 1.4 MB at 1 GB/s without
  // the host copying megabytes (which no phase accounts for).
  constexpr int64_t kRows = 14000;  // bytes to the EP peer: 50 + 1400 us
  PhaseCosts c;
  c.ep = 2;
  c.ep_link = {50, 0.01};
  PhaseProgram f, b, i, w;
  int x = 0;
  for (int l = 0; l < layers; ++l) {
    f.push_back(PhaseStep::Compute(kRouter, "router"));
    f.push_back(PhaseStep::Post(x, 8, "dispatch counts"));
    f.push_back(PhaseStep::Yield());
    f.push_back(PhaseStep::Wait(x++));
    f.push_back(PhaseStep::Post(x, kRows, "dispatch"));
    f.push_back(PhaseStep::Compute(kShared, "shared"));
    f.push_back(PhaseStep::Yield());
    f.push_back(PhaseStep::Wait(x++));
    f.push_back(PhaseStep::Compute(kExperts, "experts"));
    f.push_back(PhaseStep::Post(x, kRows, "combine"));
    f.push_back(PhaseStep::Yield());
    f.push_back(PhaseStep::Wait(x++));
    f.push_back(PhaseStep::Compute(kSum, "residual"));
  }
  for (PhaseProgram* p : {&b, &i}) {
    int y = 0;
    for (int l = 0; l < layers; ++l) {
      p->push_back(PhaseStep::Post(y, kRows, "dispatch dy"));
      p->push_back(PhaseStep::Compute(kShared, "shared"));
      p->push_back(PhaseStep::Yield());
      p->push_back(PhaseStep::Wait(y++));
      p->push_back(PhaseStep::Compute(kExperts, "experts"));
      p->push_back(PhaseStep::Post(y, kRows, "combine dx"));
      if (p == &b) {  // the other pass computes while dx travels, then these
        p->push_back(PhaseStep::Yield());
        p->push_back(PhaseStep::Compute(kWeights, "expert weights"));
      }
      p->push_back(PhaseStep::Yield());
      p->push_back(PhaseStep::Wait(y++));
      p->push_back(PhaseStep::Compute(kRouter + kSum, "router"));
    }
  }
  w.push_back(PhaseStep::Compute(layers * kWeights, "weights"));
  c.f = {f};
  c.b = {b};
  c.i = {i};
  c.w = {w};
  return c;
}

void BM_PhasedStep(benchmark::State& state, Kind kind) {
  constexpr int kPp = 4, kEp = 2, kMoeLayers = 16;
  const Schedule s = *Lower(*Generate({kind, kPp, 8}));
  CostModel cost;
  cost.phases = std::make_shared<PhaseCosts>(MoePhases(kMoeLayers / s.stages));
  const absl::StatusOr<SimResult> sim = Simulate(s, {cost});
  if (!sim.ok()) {
    state.SkipWithError(std::string(sim.status().message()).c_str());
    return;
  }
  const double simulated_ms = sim->makespan / 1000;
  // World rank w = pp_rank * 2 + ep_rank; only EP peers' traffic costs.
  comm::NetworkModel net;
  net.between_nodes = [&](int a, int b) { return a / kEp == b / kEp ? cost.phases->ep_link : comm::Link{}; };
  auto world = comm::EmulatedNetwork(net).Wrap(comm::CreateLocalGroup(kPp * kEp));
  std::vector<std::unique_ptr<comm::Communicator>> pipes(kPp * kEp), experts(kPp * kEp);
  std::vector<std::unique_ptr<EmulatedPhasedStageWork>> work(kPp * kEp);
  // One step: every rank's program; the slowest rank's time in ms.
  auto step = [&]() -> absl::StatusOr<double> {
    std::vector<absl::StatusOr<RankRun>> runs(kPp * kEp, absl::UnknownError(""));
    std::vector<std::thread> threads;
    for (int w = 0; w < kPp * kEp; ++w) {
      threads.emplace_back([&, w] { runs[w] = RunRank(s, w / kEp, *work[w], *pipes[w], {}); });
    }
    for (auto& t : threads) t.join();
    double ms = 0;
    for (const auto& r : runs) {
      if (!r.ok()) return r.status();
      ms = std::max(ms, r->step_us / 1000.0);
    }
    return ms;
  };
  std::vector<std::thread> threads;
  std::vector<absl::Status> split(kPp * kEp);
  for (int w = 0; w < kPp * kEp; ++w) {
    threads.emplace_back([&, w] {
      const Deadline d = Deadline::In(absl::Minutes(1));
      absl::StatusOr<std::unique_ptr<comm::Communicator>> p = world[w]->Split(w % kEp, w / kEp, d);
      absl::StatusOr<std::unique_ptr<comm::Communicator>> e = world[w]->Split(w / kEp, w % kEp, d);
      split[w] = p.ok() ? e.status() : p.status();
      if (!split[w].ok()) return;
      pipes[w] = *std::move(p);
      experts[w] = *std::move(e);
      work[w] = std::make_unique<EmulatedPhasedStageWork>(s, cost, absl::Milliseconds(1), 1024, experts[w].get());
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& st : split) {
    if (!st.ok()) {
      state.SkipWithError(std::string(st.message()).c_str());
      return;
    }
  }
  // A first step touches every exchange buffer (page faults are no phase's).
  if (absl::StatusOr<double> warm = step(); !warm.ok()) {
    state.SkipWithError(std::string(warm.status().message()).c_str());
    return;
  }
  double measured_ms = 0;
  for (auto _ : state) {
    absl::StatusOr<double> ms = step();
    if (!ms.ok()) {
      state.SkipWithError(std::string(ms.status().message()).c_str());
      return;
    }
    measured_ms = *ms;
    state.SetIterationTime(measured_ms / 1000.0);
  }
  state.counters["measured_ms"] = measured_ms;
  state.counters["simulated_ms"] = simulated_ms;
  state.counters["deviation_pct"] = 100.0 * (measured_ms - simulated_ms) / simulated_ms;
}

BENCHMARK_CAPTURE(BM_PhasedStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PhasedStep, dualpipev, Kind::kDualPipeV)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PhasedStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PhasedStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_EmulatedStep, dualpipe, Kind::kDualPipe)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, 1f1b, Kind::k1F1B)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EmulatedStep, zb1p, Kind::kZB1P)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::schedule
