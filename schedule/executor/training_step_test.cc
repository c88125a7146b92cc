// One training step of the reference MoE model under every schedule kind
// equals sequential training: the same per-micro-batch losses (bit for bit)
// and parameter gradients (bit for bit where each stage accumulates its
// micro-batches in the sequential order; DualPipe sums two copies, so there
// 1 - 2 sum(xy) / sum(x^2 + y^2) < 1e-10 in f64). Inference (forward only)
// gives the same losses.
#include <cstring>
#include <thread>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "comm/store/store_communicator.h"
#include "gtest/gtest.h"
#include <random>

#include "model/tensor.h"
#include "schedule/executor/executor.h"
#include "schedule/executor/model_stage_work.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

model::ModelConfig Config() {
  model::ModelConfig c;
  c.num_layers = 2;  // 4 units: input projection, 2 MoE blocks, head
  c.seed = 7;
  return c;
}

model::Tensor Random(int64_t rows, int64_t cols, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = u(rng);
  return *model::Tensor::FromVector({rows, cols}, v);
}

PipelineData Data(const model::ModelConfig& c, int n) {
  PipelineData d;
  for (int g = 0; g < n; ++g) {
    d.inputs.push_back(Random(5, c.input_dim, 100 + g, 2.0f));
    model::Target t;
    t.values = Random(5, c.output_dim, 500 + g, 1.0f);
    d.targets.push_back(std::move(t));
  }
  return d;
}

// 1 - 2 sum(xy) / sum(x^2 + y^2), in double (DualPipe's check).
double CalDiff(absl::Span<const float> x, absl::Span<const float> y) {
  double xy = 0, xx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += double{x[i]} * y[i];
    xx += double{x[i]} * x[i] + double{y[i]} * y[i];
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

struct StepResult {
  std::map<int, double> losses;
  std::vector<std::unique_ptr<ModelStageWork>> work;
};

StepResult RunStep(const Schedule& s, const model::ModelConfig& c, const PipelineData& data, bool store_backend,
                   bool forward_only) {
  StepResult r;
  const std::vector<int> bounds = EvenBounds(c.num_layers + 2, s.stages);
  for (int rank = 0; rank < s.ranks; ++rank) {
    auto w = ModelStageWork::Create(s, rank, c, bounds, &data);
    EXPECT_OK(w);
    r.work.push_back(*std::move(w));
  }
  comm::MemoryStore memory;
  std::vector<std::unique_ptr<comm::Communicator>> comms;
  if (store_backend) {
    for (int rank = 0; rank < s.ranks; ++rank) comms.push_back(comm::MakeStoreCommunicator(&memory, rank, s.ranks));
  } else {
    comms = comm::CreateLocalGroup(s.ranks);
  }
  MemoryAbortBoard board;
  ExecutorOptions o;
  o.abort = &board;
  o.forward_only = forward_only;
  std::vector<absl::Status> status(s.ranks);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < s.ranks; ++rank) {
    threads.emplace_back([&, rank] { status[rank] = RunRank(s, rank, *r.work[rank], *comms[rank], o).status(); });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& st : status) EXPECT_OK(st);
  for (const auto& w : r.work) {
    for (const auto& [g, l] : w->losses()) r.losses[g] = l;
  }
  return r;
}

TEST(TrainingStepTest, EveryKindEqualsSequentialTraining) {
  const model::ModelConfig c = Config();
  for (Kind kind : {Kind::kGPipe, Kind::k1F1B, Kind::kInterleaved1F1B, Kind::kZB1P, Kind::kZBV, Kind::kDualPipe,
                    Kind::kDualPipeV}) {
    for (bool store_backend : {false, true}) {
      SCOPED_TRACE(absl::StrFormat("%s on %s", KindName(kind), store_backend ? "store" : "local"));
      const int n = 4;
      ASSERT_OK_AND_ASSIGN(Schedule compute, Generate({kind, 2, n}));
      ASSERT_OK_AND_ASSIGN(Schedule s, Lower(compute));
      const PipelineData data = Data(c, n);
      ASSERT_OK_AND_ASSIGN(auto reference, model::Model::Create(c));
      ASSERT_OK_AND_ASSIGN(std::vector<double> ref_losses, Sequential(*reference, data));
      StepResult step = RunStep(s, c, data, store_backend, /*forward_only=*/false);
      ASSERT_EQ(step.losses.size(), n);
      for (int g = 0; g < n; ++g) EXPECT_EQ(step.losses[g], ref_losses[g]) << "micro-batch " << g;
      const std::vector<int>& bounds = step.work[0]->bounds();
      for (int st = 0; st < s.stages; ++st) {
        for (int u = bounds[st]; u < bounds[st + 1]; ++u) {
          std::vector<model::Parameter*> want = reference->UnitParameters(u);
          // The copies of this stage (two for DualPipe), summed in direction order.
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
            if (s.directions == 1) {
              EXPECT_EQ(std::memcmp(sum[p].data(), w.data(), 4 * w.size()), 0) << want[p]->name;
            } else {
              EXPECT_LT(CalDiff(sum[p], w), 1e-10) << want[p]->name;
            }
          }
        }
      }
      // Inference runs the same schedule and gives the same losses.
      StepResult inference = RunStep(s, c, data, store_backend, /*forward_only=*/true);
      for (int g = 0; g < n; ++g) EXPECT_EQ(inference.losses[g], ref_losses[g]) << "inference micro-batch " << g;
    }
  }
}

// Must-fail twin of the gradient comparison: a one-ulp change is caught
// bitwise and pushes CalDiff of a small vector above zero.
TEST(TrainingStepTest, ComparisonsNoticeOneChangedValue) {
  std::vector<float> a = {1.0f, -2.0f, 3.0f}, b = a;
  b[1] = std::nextafter(b[1], 0.0f);
  EXPECT_NE(std::memcmp(a.data(), b.data(), 12), 0);
  EXPECT_EQ(CalDiff(a, a), 0.0);
  b[1] = -2.5f;
  EXPECT_GT(CalDiff(a, b), 1e-10);
}

}  // namespace
}  // namespace tandem::schedule
