// tandem from another Bazel workspace: rebalance expert loads with EPLB,
// generate and simulate a DualPipe schedule, and train a small MoE model for
// a few steps on 2 pipeline x 2 expert-parallel ranks (threads). Exits 1 if a
// result is not what tandem promises.
#include <cstdio>
#include <mutex>
#include <vector>

#include "balance/eplb.h"
#include "balance/metrics.h"
#include "comm/local/local_communicator.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/simulator.h"
#include "train/data.h"
#include "train/trainer.h"

namespace {

using namespace tandem;  // an example; real code names what it uses

absl::Status Run() {
  // 1. EPLB: 2 layers x 12 experts on 8 GPUs (the EPLB README's example).
  const std::vector<int64_t> loads = {90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,
                                      20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27};
  const balance::Weights w = balance::Weights::Int64(loads, 2, 12);
  absl::StatusOr<balance::Placement> p = balance::RebalanceExperts(w, 16, 4, 2, 8, {});
  if (!p.ok()) return p.status();
  absl::StatusOr<balance::PlacementMetrics> m = balance::ComputeMetrics(w, *p, 8);
  if (!m.ok()) return m.status();
  std::printf("eplb: balancedness %.4f over 2 layers, 16 slots on 8 GPUs\n", m->balancedness_aggregate);

  // 2. DualPipe on 4 ranks, 8 micro-batches, unit costs: the DualPipe
  // README's bubble (PP/2 - 1)(F&B + B - 3W) = 1 x (3 + 2 - 3) = 2.
  absl::StatusOr<schedule::Schedule> s = schedule::Generate({schedule::Kind::kDualPipe, 4, 8});
  if (!s.ok()) return s.status();
  schedule::CostModel cost;
  cost.fb = {3};
  absl::StatusOr<schedule::SimResult> sim = schedule::Simulate(*s, {cost});
  if (!sim.ok()) return sim.status();
  std::printf("schedule: dualpipe 4 ranks x 8 micro-batches, makespan %.0f, bubble %.0f\n", sim->makespan, sim->bubble);
  if (sim->bubble != 2) return absl::InternalError("unexpected DualPipe bubble");

  // 3. Training: 2 pipeline x 2 data-parallel ranks (one EP group of 2),
  // DualPipe, AdamW.
  train::TrainerOptions o;
  o.kind = schedule::Kind::kDualPipe;
  o.pp = 2;
  o.dp = 2;
  o.ep = 2;
  o.microbatches = 4;
  o.model.num_layers = 2;
  o.model.bias_update_speed = 0;
  o.extra_slots = 2;
  o.adamw.lr = 1e-2f;
  auto world = comm::CreateLocalGroup(o.pp * o.dp);
  std::vector<double> losses;
  std::mutex mu;
  absl::Status st = train::RunOnThreads(o.pp * o.dp, [&](int r) -> absl::Status {
    absl::StatusOr<std::unique_ptr<train::Trainer>> t = train::Trainer::Create(o, *world[r]);
    if (!t.ok()) return t.status();
    const int replica = (*t)->mesh().dp_rank;
    return (*t)->Run(
        8, [&](int step) { return *train::TeacherData(o.model, step, o.microbatches, 16, o.dp, replica); },
        [&](const train::StepStats& stats) {
          std::lock_guard<std::mutex> lock(mu);
          if (r == 0) losses.push_back(stats.loss);
        });
  });
  if (!st.ok()) return st;
  std::printf("train: dualpipe 2 x 2, loss %.4f -> %.4f over %zu steps\n", losses.front(), losses.back(),
              losses.size());
  if (!(losses.back() < losses.front())) return absl::InternalError("the loss did not fall");
  return absl::OkStatus();
}

}  // namespace

int main() {
  const absl::Status s = Run();
  if (!s.ok()) {
    std::fprintf(stderr, "example: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("example: ok\n");
  return 0;
}
