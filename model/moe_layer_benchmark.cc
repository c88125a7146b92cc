// CPU throughput of one MoE block (RMSNorm, gate, routed SwiGLU experts,
// shared expert, residual) of the reference model:
//
//   BM_MoeBlockForward/<size>          forward only
//   BM_MoeBlockForwardBackward/<size>  forward, backward (input and weight
//                                      gradients)
// Sizes: 0 = small  (256 tokens, hidden 64, 8 experts of 64, top-2)
//        1 = medium (512 tokens, hidden 256, 32 experts of 128, top-4,
//                    4 groups / 2 kept, 1 shared expert)
// Counter tokens/s is tokens processed per second.
#include <memory>

#include "benchmark/benchmark.h"
#include "model/model.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

struct Size {
  int tokens;
  ModelConfig config;
};

Size MakeSize(int which) {
  Size s;
  ModelConfig& c = s.config;
  c.num_layers = 1;
  if (which == 0) {
    s.tokens = 256;
    c.hidden = 64;
    c.num_experts = 8;
    c.moe_inter = 64;
    c.top_k = 2;
    c.num_shared_experts = 0;
  } else {
    s.tokens = 512;
    c.hidden = 256;
    c.num_experts = 32;
    c.moe_inter = 128;
    c.top_k = 4;
    c.n_group = 4;
    c.topk_group = 2;
    c.num_shared_experts = 1;
  }
  return s;
}

void Run(benchmark::State& state, bool backward) {
  const Size s = MakeSize(static_cast<int>(state.range(0)));
  std::unique_ptr<Model> model = Model::Create(s.config).value();
  Tensor x = testing::RandomTensor({s.tokens, s.config.hidden}, 1);
  Tensor dy = testing::RandomTensor({s.tokens, s.config.hidden}, 2);
  for (auto _ : state) {
    std::unique_ptr<Model::UnitState> saved;
    Tensor y = model->UnitForward(1, x, backward ? &saved : nullptr).value();
    benchmark::DoNotOptimize(y.raw());
    if (backward) {
      Tensor dx = model->UnitBackward(1, *saved, dy, nullptr).value();
      benchmark::DoNotOptimize(dx.raw());
    }
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(s.tokens) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_MoeBlockForward(benchmark::State& state) { Run(state, false); }
void BM_MoeBlockForwardBackward(benchmark::State& state) { Run(state, true); }

BENCHMARK(BM_MoeBlockForward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoeBlockForwardBackward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tandem::model
