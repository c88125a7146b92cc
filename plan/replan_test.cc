#include "plan/replan.h"

#include <random>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/generators/generate.h"

namespace tandem::plan {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

JobShape Demo() {  // the demo's default: DualPipe 4 PP x 2 DP (EP 2), 8 x 16 tokens per rank
  JobShape j;
  j.kind = schedule::Kind::kDualPipe;
  j.pp = 4;
  j.dp = 2;
  j.ep = 2;
  j.microbatches = 8;
  j.tokens = 16;
  j.extra_slots = 2;
  return j;
}

// Whether `s` is a mesh the job can run on `ranks` ranks (independently of
// Replan's search).
bool Feasible(const JobShape& job, const JobShape& s, int ranks, int units, int experts) {
  if (s.pp * s.dp > ranks || s.dp % s.ep != 0 || (experts + job.extra_slots) % s.ep != 0) return false;
  if (s.global_batch() != job.global_batch()) return false;
  absl::StatusOr<schedule::Schedule> g = schedule::Generate({s.kind, s.pp, s.microbatches});
  return g.ok() && g->stages <= units;
}

TEST(ReplanTest, KnownCases) {
  const JobShape job = Demo();
  ASSERT_OK_AND_ASSIGN(JobShape same, Replan(job, 8, 8, 8));
  EXPECT_EQ(same.Flags(), job.Flags());
  // 7 ranks: all of them as a 7-stage pipeline (8 units; the V-shaped
  // kinds would need 14 stages), a one-stage-per-rank kind.
  ASSERT_OK_AND_ASSIGN(JobShape seven, Replan(job, 7, 8, 8));
  EXPECT_EQ(seven.Flags(), "--kind=zb1p --pp=7 --dp=1 --ep=1 --microbatches=8 --tokens=32");
  // 3 ranks: a global batch of 256 does not split 3 ways, so 3 PP x 1 DP.
  ASSERT_OK_AND_ASSIGN(JobShape three, Replan(job, 3, 8, 8));
  EXPECT_EQ(three.Flags(), "--kind=dualpipev --pp=3 --dp=1 --ep=1 --microbatches=8 --tokens=32");
  // 2 ranks: DualPipe still fits 2 pipeline ranks.
  ASSERT_OK_AND_ASSIGN(JobShape two, Replan(job, 2, 8, 8));
  EXPECT_EQ(two.kind, schedule::Kind::kDualPipe);
  EXPECT_EQ(two.pp * two.dp, 2);
  EXPECT_THAT(Replan(job, 0, 8, 8).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no ranks left")));
}

// Random jobs and losses: the plan is feasible and no feasible mesh uses
// more ranks (every pp x dp x ep x kind x micro-batch count tried).
TEST(ReplanTest, UsesAsManyRanksAsAnyFeasibleMesh) {
  std::mt19937 rng(3);
  const std::vector<schedule::Kind> kinds = {schedule::Kind::kDualPipe, schedule::Kind::k1F1B, schedule::Kind::kZBV,
                                             schedule::Kind::kGPipe};
  for (int trial = 0; trial < 40; ++trial) {
    JobShape job;
    job.kind = kinds[rng() % kinds.size()];
    job.pp = 2 * (1 + static_cast<int>(rng() % 2));
    job.dp = 1 + static_cast<int>(rng() % 3);
    job.ep = 1;
    job.microbatches = 2 * job.pp;
    job.tokens = 1 + static_cast<int>(rng() % 6);
    const int ranks = 1 + static_cast<int>(rng() % (job.ranks() + 1)), units = 2 * job.pp + 2, experts = 4;
    SCOPED_TRACE(absl::StrFormat("trial %d: %s to %d ranks", trial, job.Flags(), ranks));
    ASSERT_OK_AND_ASSIGN(JobShape got, Replan(job, ranks, units, experts));
    EXPECT_TRUE(Feasible(job, got, ranks, units, experts)) << got.Flags();
    int most = 0;
    for (int pp = 1; pp <= ranks; ++pp) {
      for (int dp = 1; pp * dp <= ranks; ++dp) {
        for (schedule::Kind kind : schedule::GeneratedKinds()) {
          for (int m = 1; m <= 4 * job.microbatches + 8; ++m) {
            if (job.global_batch() % (int64_t{m} * dp) != 0) continue;
            JobShape c = job;
            c.kind = kind;
            c.pp = pp;
            c.dp = dp;
            c.ep = 1;
            c.microbatches = m;
            c.tokens = static_cast<int>(job.global_batch() / (int64_t{m} * dp));
            if (Feasible(job, c, ranks, units, experts)) most = std::max(most, pp * dp);
          }
        }
      }
    }
    EXPECT_EQ(got.pp * got.dp, most) << got.Flags();
  }
}

}  // namespace
}  // namespace tandem::plan
