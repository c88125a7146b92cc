// Benchmarks of the EPLB solver (single thread), on Zipf-like int64 token
// counts (balance/testing/synthetic_loads.h):
//
//   BM_DeepSeekV3/<mode>    58 x 256 experts, 288 slots, 8 groups, 4 nodes,
//                           32 GPUs (hierarchical). Targets: reference
//                           < 1 ms, refined < 20 ms. Counters for refined:
//                           gap_removed = share of (reference max GPU load -
//                           lower bound) removed, summed over layers;
//                           balancedness of reference and of this mode.
//   BM_Global320/<mode>     58 x 256 experts, 320 slots, 8 groups, 3 nodes
//                           (so the global policy), 64 GPUs. Target < 3 ms.
//   BM_Scaling/E/P/L        stable mode, 58 layers, E experts, P GPUs, one
//                           node, E + P slots rounded up to a multiple of P,
//                           Zipf-like (L=0) or uniform 0..999 (L=1) loads;
//                           counters ns_per_slot = time / (layers * slots)
//                           and log2phy_width (the largest replica count:
//                           log2phy has layers * E * width entries).
//   BM_Migration/<drift>    migration-aware rebalance on the first shape
//                           after every load drifts by up to +-drift;
//                           counters moved (replicas) and fresh_moved (slots
//                           a fresh plan would change).

#include <cstdint>
#include <vector>

#include "balance/eplb.h"
#include "balance/metrics.h"
#include "balance/migration.h"
#include "balance/placement.h"
#include "balance/testing/synthetic_loads.h"
#include "benchmark/benchmark.h"

namespace tandem::balance {
namespace {

constexpr int kLayers = 58;
constexpr int kExperts = 256;

const std::vector<int64_t>& ZipfLoads() {
  static const auto* const kLoads = new std::vector<int64_t>(testing::ZipfLoads(kLayers, kExperts, 2024));
  return *kLoads;
}

struct Shape {
  int replicas, groups, nodes, gpus;
};

RebalanceOptions OptionsFor(int64_t variant) {
  RebalanceOptions o;
  o.mode = variant == 0 ? Mode::kReference : variant == 1 ? Mode::kStable : Mode::kRefined;
  o.cross_node_replicas = variant == 3;
  return o;
}

const char* const kVariantNames[] = {"reference", "stable", "refined", "refined_cross_node"};

// Quality counters against reference mode (computed once, outside timing).
void ReportQuality(benchmark::State& state, const Weights& w, const Shape& s, const Placement& p) {
  RebalanceOptions reference;
  reference.mode = Mode::kReference;
  const Placement ref = RebalanceExperts(w, s.replicas, s.groups, s.nodes, s.gpus, reference).value();
  const PlacementMetrics a = ComputeMetrics(w, ref, s.gpus).value();
  const PlacementMetrics b = ComputeMetrics(w, p, s.gpus).value();
  double gap_ref = 0, gap = 0;
  for (size_t l = 0; l < a.max_gpu_load.size(); ++l) {
    gap_ref += a.max_gpu_load[l] - a.lower_bound[l];
    gap += b.max_gpu_load[l] - b.lower_bound[l];
  }
  state.counters["balancedness_ref"] = a.balancedness_aggregate;
  state.counters["balancedness"] = b.balancedness_aggregate;
  state.counters["gap_removed"] = gap_ref > 0 ? 1 - gap / gap_ref : 0;
}

void RunShape(benchmark::State& state, const Shape& s) {
  const Weights w = Weights::Int64(ZipfLoads(), kLayers, kExperts);
  const RebalanceOptions options = OptionsFor(state.range(0));
  state.SetLabel(kVariantNames[state.range(0)]);
  Placement p;
  for (auto _ : state) {
    p = RebalanceExperts(w, s.replicas, s.groups, s.nodes, s.gpus, options).value();
    benchmark::DoNotOptimize(p.phy2log.data());
  }
  ReportQuality(state, w, s, p);
}

void BM_DeepSeekV3(benchmark::State& state) { RunShape(state, Shape{288, 8, 4, 32}); }
BENCHMARK(BM_DeepSeekV3)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

void BM_Global320(benchmark::State& state) { RunShape(state, Shape{320, 8, 3, 64}); }
BENCHMARK(BM_Global320)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

void BM_Scaling(benchmark::State& state) {
  const int experts = static_cast<int>(state.range(0));
  const int gpus = static_cast<int>(state.range(1));
  const int replicas = (experts + gpus + gpus - 1) / gpus * gpus;
  const bool zipf = state.range(2) == 0;
  state.SetLabel(zipf ? "zipf" : "uniform");
  const std::vector<int64_t> loads = zipf ? testing::ZipfLoads(kLayers, experts, 7 + experts)
                                          : testing::UniformLoads(kLayers, experts, 7 + experts, 999);
  const Weights w = Weights::Int64(loads, kLayers, experts);
  Placement p;
  for (auto _ : state) {
    p = RebalanceExperts(w, replicas, 1, 1, gpus).value();
    benchmark::DoNotOptimize(p.phy2log.data());
  }
  state.counters["slots"] = replicas;
  state.counters["log2phy_width"] = p.max_count;
  state.counters["ns_per_slot"] =
      benchmark::Counter(static_cast<double>(kLayers) * replicas,
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Scaling)->ArgsProduct({{64, 256, 1024}, {8, 32, 64, 256}, {0, 1}})->Unit(benchmark::kMillisecond);

void BM_Migration(benchmark::State& state) {
  const double drift = state.range(0) / 100.0;
  const Shape s{288, 8, 4, 32};
  const Weights before = Weights::Int64(ZipfLoads(), kLayers, kExperts);
  const Placement previous = RebalanceExperts(before, s.replicas, s.groups, s.nodes, s.gpus).value();
  testing::Rng rng(5);
  std::vector<int64_t> loads;
  for (const int64_t x : ZipfLoads()) {
    loads.push_back(static_cast<int64_t>(static_cast<double>(x) * (1 - drift + 2 * drift * rng.Uniform())));
  }
  const Weights after = Weights::Int64(loads, kLayers, kExperts);
  MigrationPlan plan;
  for (auto _ : state) {
    plan = RebalanceWithMigration(after, previous.phy2log, s.replicas, s.groups, s.nodes, s.gpus).value();
    benchmark::DoNotOptimize(plan.moved_replicas);
  }
  const Placement fresh = RebalanceExperts(after, s.replicas, s.groups, s.nodes, s.gpus).value();
  int64_t fresh_moved = 0;
  for (size_t i = 0; i < fresh.phy2log.size(); ++i) {
    fresh_moved += fresh.phy2log[i] != previous.phy2log[i];
  }
  state.counters["moved"] = static_cast<double>(plan.moved_replicas);
  state.counters["fresh_moved"] = static_cast<double>(fresh_moved);
  state.counters["balancedness"] = plan.metrics.balancedness_aggregate;
  state.counters["balancedness_fresh"] = plan.fresh_metrics.balancedness_aggregate;
}
BENCHMARK(BM_Migration)->Arg(5)->Arg(20)->Arg(50)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::balance
