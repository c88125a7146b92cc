#include "train/testing/step_check.h"

#include <cstring>
#include <random>
#include <thread>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "schedule/executor/executor.h"

namespace tandem::train::testing {
namespace {

model::Tensor Random(int64_t rows, int64_t cols, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = u(rng);
  return *model::Tensor::FromVector({rows, cols}, v);
}

}  // namespace

model::ModelConfig StepConfig() {
  model::ModelConfig c;
  c.num_layers = 2;
  c.seed = 7;
  return c;
}

PipelineData StepData(const model::ModelConfig& c, int n, int tokens) {
  PipelineData d;
  for (int g = 0; g < n; ++g) {
    d.inputs.push_back(Random(tokens, c.input_dim, 100 + g, 2.0f));
    model::Target t;
    t.values = Random(tokens, c.output_dim, 500 + g, 1.0f);
    d.targets.push_back(std::move(t));
  }
  return d;
}

double CalDiff(absl::Span<const float> x, absl::Span<const float> y) {
  double xy = 0, xx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += double{x[i]} * y[i];
    xx += double{x[i]} * x[i] + double{y[i]} * y[i];
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

StepResult RunStep(const Schedule& s, const model::ModelConfig& c, const PipelineData& data,
                   std::vector<std::unique_ptr<comm::Communicator>>& comms, bool forward_only,
                   const std::function<ModelPlacer(int rank)>& placer) {
  StepResult r;
  const std::vector<int> bounds = EvenBounds(model::NumUnits(c), s.stages);
  for (int rank = 0; rank < s.ranks; ++rank) {
    ModelStageWork::Options wo;
    if (placer) {
      wo.placer = placer(rank);
    }
    auto w = ModelStageWork::Create(s, rank, c, bounds, wo);
    EXPECT_OK(w);
    if (!w.ok()) return r;
    EXPECT_OK((*w)->SetData(&data));
    r.work.push_back(*std::move(w));
  }
  schedule::MemoryAbortBoard board;
  schedule::ExecutorOptions o;
  o.abort = &board;
  o.forward_only = forward_only;
  std::vector<absl::Status> status(s.ranks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < s.ranks; ++rank) {
    threads.emplace_back([&, rank] {
      status[rank] = schedule::RunRank(s, rank, *r.work[rank], *comms[rank], o).status();
      if (status[rank].ok()) status[rank] = r.work[rank]->SyncGradients();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& st : status) EXPECT_OK(st);
  for (const auto& w : r.work) {
    for (const auto& [g, l] : w->losses()) r.losses[g] = l;
  }
  return r;
}

void ExpectGradientsMatch(const Schedule& s, const StepResult& step, model::Model& reference, double bound) {
  const std::vector<int>& bounds = step.work[0]->bounds();
  for (int st = 0; st < s.stages; ++st) {
    for (int u = bounds[st]; u < bounds[st + 1]; ++u) {
      std::vector<model::Parameter*> want = reference.UnitParameters(u);
      std::vector<std::vector<float>> sum(want.size());
      for (int d = 0; d < s.directions; ++d) {
        model::Model* m = step.work[s.RankOf(d, st)]->model(st, d);
        ASSERT_NE(m, nullptr);
        std::vector<model::Parameter*> got = m->UnitParameters(u);
        for (size_t p = 0; p < got.size(); ++p) {
          absl::Span<float> g = got[p]->grad.span();
          if (sum[p].empty()) {
            sum[p].assign(g.begin(), g.end());
          } else {
            for (size_t i = 0; i < g.size(); ++i) sum[p][i] += g[i];
          }
        }
      }
      for (size_t p = 0; p < want.size(); ++p) {
        absl::Span<float> w = want[p]->grad.span();
        if (bound == 0) {
          EXPECT_EQ(std::memcmp(sum[p].data(), w.data(), 4 * w.size()), 0) << want[p]->name;
        } else {
          EXPECT_LT(CalDiff(sum[p], w), bound) << want[p]->name;
        }
      }
    }
  }
}

}  // namespace tandem::train::testing
