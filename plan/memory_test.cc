#include "plan/memory.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "schedule/generators/generate.h"

namespace tandem::plan {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

model::ModelConfig Config() {
  model::ModelConfig c;
  c.num_layers = 4;
  c.num_dense_layers = 1;
  c.num_experts = 4;
  c.num_shared_experts = 1;
  return c;
}

// On one rank every unit's state is 16 bytes per parameter of the model
// itself (counted from a created model, unit by unit).
TEST(MemoryTest, StateIsSixteenBytesPerParameterOfEachUnit) {
  const model::ModelConfig c = Config();
  ASSERT_OK_AND_ASSIGN(auto m, model::Model::Create(c));
  ASSERT_OK_AND_ASSIGN(std::vector<UnitMemory> units, UnitMemories(c, 1, 0));
  ASSERT_EQ(static_cast<int>(units.size()), m->num_units());
  for (int u = 0; u < m->num_units(); ++u) {
    int64_t params = 0;
    for (model::Parameter* p : m->UnitParameters(u)) params += p->value.numel();
    EXPECT_EQ(units[u].state_bytes, 16.0 * params) << "unit " << u;
    EXPECT_GT(units[u].activation_bytes_per_token, 0) << "unit " << u;
  }
  // Experts sharded: 4 + 2 slots over 2 ranks leaves 3 routed experts per
  // MoE block instead of 4.
  ASSERT_OK_AND_ASSIGN(std::vector<UnitMemory> sharded, UnitMemories(c, 2, 2));
  const double expert = 16.0 * 3 * c.hidden * c.moe_inter;
  EXPECT_EQ(sharded[2].state_bytes, units[2].state_bytes - expert);
  EXPECT_EQ(sharded[1].state_bytes, units[1].state_bytes);  // the dense block
  EXPECT_THAT(UnitMemories(c, 0, 0).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ep 0")));
}

// In-flight depth from the programs against the kinds' closed forms:
// GPipe holds every micro-batch on every stage, 1F1B holds P - s on stage
// s; splitting B into I and W (ZB1P) never holds fewer.
TEST(MemoryTest, PeakInFlightMatchesTheKindsClosedForms) {
  const int ranks = 4, n = 8;
  ASSERT_OK_AND_ASSIGN(schedule::Schedule gpipe, schedule::Generate({schedule::Kind::kGPipe, ranks, n}));
  ASSERT_OK_AND_ASSIGN(schedule::Schedule one, schedule::Generate({schedule::Kind::k1F1B, ranks, n}));
  ASSERT_OK_AND_ASSIGN(schedule::Schedule zb, schedule::Generate({schedule::Kind::kZB1P, ranks, n}));
  const std::vector<int> g = PeakInFlight(gpipe), o = PeakInFlight(one), z = PeakInFlight(zb);
  for (int s = 0; s < ranks; ++s) {
    EXPECT_EQ(g[s], n) << "stage " << s;
    EXPECT_EQ(o[s], ranks - s) << "stage " << s;
    EXPECT_GE(z[s], o[s]) << "stage " << s;
  }
  // DualPipe: every copy holds something, no copy more than its direction's
  // micro-batches.
  ASSERT_OK_AND_ASSIGN(schedule::Schedule dual, schedule::Generate({schedule::Kind::kDualPipe, ranks, n}));
  for (int p : PeakInFlight(dual)) {
    EXPECT_GE(p, 1);
    EXPECT_LE(p, n / 2);
  }
}

TEST(MemoryTest, RankMemoryAddsTheCopiesAndRefusesBadBounds) {
  const model::ModelConfig c = Config();  // 6 units
  ASSERT_OK_AND_ASSIGN(std::vector<UnitMemory> units, UnitMemories(c, 1, 0));
  ASSERT_OK_AND_ASSIGN(schedule::Schedule s, schedule::Generate({schedule::Kind::k1F1B, 2, 4}));
  ASSERT_OK_AND_ASSIGN(std::vector<double> bytes, RankMemoryBytes(s, units, {0, 3, 6}, 5));
  ASSERT_EQ(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], CopyBytes(units, 0, 3, 2, 5));
  EXPECT_EQ(bytes[1], CopyBytes(units, 3, 6, 1, 5));
  double state = 0, act = 0;
  for (int u = 0; u < 3; ++u) {
    state += units[u].state_bytes;
    act += units[u].activation_bytes_per_token;
  }
  EXPECT_EQ(CopyBytes(units, 0, 3, 2, 5), state + 2 * 5 * act);
  EXPECT_THAT(RankMemoryBytes(s, units, {0, 6}, 5).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 3 increasing unit indices")));
  EXPECT_THAT(RankMemoryBytes(s, units, {0, 3, 3}, 5).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got [0, 3, 3]")));
}

}  // namespace
}  // namespace tandem::plan
