// Schedule tooling at scale: 64 ranks x 1024 micro-batches (DualPipeV: about
// 750 thousand compute and communication entries), on one core.
//
//   BM_GenerateLower/<kind>   generate + lower (targets: dualpipev < 10 ms)
//   BM_Validate/<kind>        validate the lowered schedule (< 20 ms)
//   BM_Simulate/<kind>        simulate it, rendezvous semantics (< 50 ms)
//   BM_ToProto, BM_FromProto  conversion to and from the proto message (< 100 ms)
//   BM_ProtoRoundTrip/<kind>  to proto, serialize, parse, from proto
//   BM_Scaling/<ranks>/<mb>   dualpipev generate + lower; entries per second
//                             should stay flat as ranks x micro-batches grows
//
// The binary keeps freed memory in the heap (mallopt below), so iterations
// measure the work, not the kernel zeroing fresh pages for every iteration's
// tens of megabytes; on this VM a cold first run costs 2-5x more.
#include <malloc.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "schedule/formats/proto_io.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/simulator.h"
#include "schedule/validator/validator.h"

namespace tandem::schedule {
namespace {

constexpr int kRanks = 64;
constexpr int kMicrobatches = 1024;

Schedule Lowered(Kind kind, int ranks = kRanks, int n = kMicrobatches) { return *Lower(*Generate({kind, ranks, n})); }

// Reports the schedule size and entries per second (items_per_second).
void Entries(benchmark::State& state, const Schedule& s) {
  state.counters["entries"] = static_cast<double>(s.TotalActions());
  state.SetItemsProcessed(state.iterations() * s.TotalActions());
}

void BM_GenerateLower(benchmark::State& state, Kind kind) {
  Schedule last;
  for (auto _ : state) {
    last = *Lower(*Generate({kind, kRanks, kMicrobatches}));
    benchmark::DoNotOptimize(last.programs.data());
  }
  Entries(state, last);
}

void BM_Validate(benchmark::State& state, Kind kind) {
  const Schedule s = Lowered(kind);
  for (auto _ : state) {
    absl::Status st = Validate(s);
    if (!st.ok()) state.SkipWithError(std::string(st.message()).c_str());
  }
  Entries(state, s);
}

void BM_Simulate(benchmark::State& state, Kind kind) {
  const Schedule s = Lowered(kind);
  SimOptions o;
  o.cost.fb = {3};
  for (auto _ : state) {
    absl::StatusOr<SimResult> r = Simulate(s, o);
    benchmark::DoNotOptimize(r);
  }
  Entries(state, s);
}

void BM_ToProto(benchmark::State& state, Kind kind) {
  const Schedule s = Lowered(kind);
  for (auto _ : state) {
    proto::Schedule p = ToProto(s);
    benchmark::DoNotOptimize(p);
  }
  Entries(state, s);
}

void BM_FromProto(benchmark::State& state, Kind kind) {
  const proto::Schedule p = ToProto(Lowered(kind));
  const Schedule s = Lowered(kind);
  for (auto _ : state) {
    absl::StatusOr<Schedule> back = FromProto(p);
    benchmark::DoNotOptimize(back);
  }
  Entries(state, s);
}

void BM_ProtoRoundTrip(benchmark::State& state, Kind kind) {
  const Schedule s = Lowered(kind);
  for (auto _ : state) {
    const std::string bytes = ToProto(s).SerializeAsString();
    absl::StatusOr<Schedule> back = ParseBinaryProto(bytes);
    benchmark::DoNotOptimize(back);
  }
  Entries(state, s);
}

void BM_Scaling(benchmark::State& state) {
  const int ranks = state.range(0), n = state.range(1);
  Schedule last;
  for (auto _ : state) {
    last = *Lower(*Generate({Kind::kDualPipeV, ranks, n}));
    benchmark::DoNotOptimize(last.programs.data());
  }
  Entries(state, last);
}

void RegisterAll() {
  for (Kind kind : GeneratedKinds()) {
    const std::string name(KindName(kind));
    benchmark::RegisterBenchmark(("BM_GenerateLower/" + name).c_str(), BM_GenerateLower, kind)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Validate/" + name).c_str(), BM_Validate, kind)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Simulate/" + name).c_str(), BM_Simulate, kind)->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_ToProto/dualpipev", BM_ToProto, Kind::kDualPipeV)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_FromProto/dualpipev", BM_FromProto, Kind::kDualPipeV)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_ProtoRoundTrip/dualpipev", BM_ProtoRoundTrip, Kind::kDualPipeV)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Scaling", BM_Scaling)
      ->Args({8, 128})
      ->Args({16, 256})
      ->Args({32, 512})
      ->Args({64, 1024})
      ->Unit(benchmark::kMillisecond);
}

bool Setup() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
  RegisterAll();
  return true;
}

const bool registered = Setup();

}  // namespace
}  // namespace tandem::schedule
