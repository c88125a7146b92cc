// One training step of the reference MoE model under every schedule kind
// equals sequential training: the same per-micro-batch losses (bit for bit)
// and parameter gradients (bit for bit where each stage accumulates its
// micro-batches in the sequential order; DualPipe sums two copies, so there
// 1 - 2 sum(xy) / sum(x^2 + y^2) < 1e-10 in f64). Inference (forward only)
// gives the same losses.
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "comm/store_backend/store_communicator.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "train/model_stage_work.h"
#include "train/testing/step_check.h"

namespace tandem::train {
namespace {

using schedule::Generate;
using schedule::Kind;
using schedule::KindName;
using schedule::Lower;

using testing::CalDiff;
using testing::ExpectGradientsMatch;
using testing::RunStep;
using testing::StepResult;

std::vector<std::unique_ptr<comm::Communicator>> Group(bool store_backend, int ranks, comm::MemoryStore* memory) {
  if (!store_backend) return comm::CreateLocalGroup(ranks);
  std::vector<std::unique_ptr<comm::Communicator>> comms;
  for (int rank = 0; rank < ranks; ++rank) comms.push_back(comm::MakeStoreCommunicator(memory, rank, ranks));
  return comms;
}

TEST(TrainingStepTest, EveryKindEqualsSequentialTraining) {
  const model::ModelConfig c = testing::StepConfig();
  for (Kind kind : {Kind::kGPipe, Kind::k1F1B, Kind::kInterleaved1F1B, Kind::kZB1P, Kind::kZBV, Kind::kDualPipe,
                    Kind::kDualPipeV}) {
    for (bool store_backend : {false, true}) {
      SCOPED_TRACE(absl::StrFormat("%s on %s", KindName(kind), store_backend ? "store" : "local"));
      const int n = 4;
      ASSERT_OK_AND_ASSIGN(Schedule compute, Generate({kind, 2, n}));
      ASSERT_OK_AND_ASSIGN(Schedule s, Lower(compute));
      const PipelineData data = testing::StepData(c, n);
      ASSERT_OK_AND_ASSIGN(auto reference, model::Model::Create(c));
      ASSERT_OK_AND_ASSIGN(std::vector<double> ref_losses, Sequential(*reference, data));
      comm::MemoryStore memory;
      std::vector<std::unique_ptr<comm::Communicator>> comms = Group(store_backend, s.ranks, &memory);
      StepResult step = RunStep(s, c, data, comms, /*forward_only=*/false);
      ASSERT_EQ(step.losses.size(), n);
      for (int g = 0; g < n; ++g) EXPECT_EQ(step.losses[g], ref_losses[g]) << "micro-batch " << g;
      ExpectGradientsMatch(s, step, *reference, s.directions == 1 ? 0.0 : 1e-10);
      // Inference runs the same schedule and gives the same losses.
      StepResult inference = RunStep(s, c, data, comms, /*forward_only=*/true);
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
}  // namespace tandem::train
