#include "schedule/generators/generate.h"

#include <map>
#include <string>
#include <tuple>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

// Each precondition, named as the reference asserts it.
TEST(GenerateTest, PreconditionsAreNamed) {
  struct Case {
    GenerateOptions o;
    std::string message;
  };
  const Case cases[] = {
      {{Kind::kDualPipe, 3, 12}, "ranks: expected an even number for dualpipe, got 3"},
      {{Kind::kDualPipe, 4, 9}, "microbatches: expected an even number for dualpipe, got 9"},
      {{Kind::kDualPipe, 4, 6}, "microbatches: expected >= 2 * ranks (8) for dualpipe, got 6"},
      {{Kind::kDualPipeV, 4, 7}, "microbatches: expected >= 2 * ranks (8) for dualpipev, got 7"},
      {{Kind::k1F1B, 4, 3}, "microbatches: expected >= the number of stages (4) for 1f1b, got 3"},
      {{Kind::kInterleaved1F1B, 4, 9},
       "microbatches: expected a multiple of the number of rounds (2 = max(1, "
       "microbatches / ranks)) for interleaved1f1b, got 9"},
      {{Kind::kZB1P, 4, 9, 2}, "microbatches: expected a multiple of the number of rounds (2"},
      {{Kind::kZBV, 4, 8, 3}, "chunks: expected 2 (two stages per rank in a V) for zbv, got 3"},
      {{Kind::kGPipe, 0, 8}, "ranks: expected >= 1 for gpipe, got 0"},
      {{Kind::kGPipe, 2, 0}, "microbatches: expected >= 1 for gpipe, got 0"},
      {{Kind::k1F1B, 2, 4, 2}, "chunks: expected 1 (one stage per rank) for 1f1b, got 2"},
      {{Kind::kCustom, 2, 4}, "custom schedules are written by hand"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Generate(c.o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

// Allowed edge cases the references accept: odd micro-batch counts for
// DualPipeV, N < 2p - 1 for ZBV (actions past N dropped), one rank.
TEST(GenerateTest, EdgeCasesTheReferencesAllow) {
  EXPECT_OK(Generate({Kind::kDualPipeV, 3, 7}));
  EXPECT_OK(Generate({Kind::kDualPipeV, 1, 2}));
  EXPECT_OK(Generate({Kind::kZBV, 4, 3}));
  EXPECT_OK(Generate({Kind::kInterleaved1F1B, 4, 3}));
  EXPECT_OK(Generate({Kind::k1F1B, 1, 1}));
}

// Closed-form counts of DualPipe per rank (anchors, section 1.3): FB pairs
// 2(M-PP+h+1) + (H-h-1) - mid, standalone F 3H-h-1+mid, full B H+mid,
// I = W = PP-h-1, where H = PP/2, h = min(r, PP-1-r), M = N/2.
TEST(GenerateTest, DualPipeOpCountsMatchClosedForms) {
  for (int pp : {2, 4, 6, 8, 10, 16}) {
    for (int n : {2 * pp, 2 * pp + 2, 3 * pp, 40}) {
      if (n % 2 != 0) continue;
      ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipe, pp, n}));
      const int H = pp / 2, M = n / 2;
      for (int r = 0; r < pp; ++r) {
        const int h = std::min(r, pp - 1 - r), mid = h == H - 1;
        std::map<Op, int> count;
        for (const Action& a : s.programs[r].actions) ++count[a.op];
        EXPECT_EQ(count[Op::kForwardBackward], 2 * (M - pp + h + 1) + (H - h - 1) - mid) << pp << " " << n << " " << r;
        EXPECT_EQ(count[Op::kForward], 3 * H - h - 1 + mid);
        EXPECT_EQ(count[Op::kBackward], H + mid);
        EXPECT_EQ(count[Op::kBackwardInput], pp - h - 1);
        EXPECT_EQ(count[Op::kBackwardWeight], pp - h - 1);
      }
    }
  }
}

// DualPipeV(P, N) rank r equals DualPipe(2P, 2N) rank r op for op, with the
// chunk id in place of the direction ("cut in half").
TEST(GenerateTest, DualPipeVIsDualPipeCutInHalf) {
  for (int p : {1, 2, 3, 5, 8}) {
    for (int n : {2 * p, 2 * p + 1, 3 * p + 4}) {
      ASSERT_OK_AND_ASSIGN(Schedule v, Generate({Kind::kDualPipeV, p, n}));
      ASSERT_OK_AND_ASSIGN(Schedule d, Generate({Kind::kDualPipe, 2 * p, 2 * n}));
      for (int r = 0; r < p; ++r) {
        const auto& a = v.programs[r].actions;
        const auto& b = d.programs[r].actions;
        ASSERT_EQ(a.size(), b.size());
        for (size_t i = 0; i < a.size(); ++i) {
          EXPECT_EQ(a[i].op, b[i].op);
          EXPECT_EQ(v.where(a[i].direction, a[i].stage).chunk, b[i].direction);
          EXPECT_EQ(a[i].mb, b[i].mb);
        }
      }
    }
  }
}

TEST(GenerateTest, SameInputsSameSchedule) {
  for (Kind k : GeneratedKinds()) {
    ASSERT_OK_AND_ASSIGN(Schedule a, Generate({k, 4, 8}));
    ASSERT_OK_AND_ASSIGN(Schedule b, Generate({k, 4, 8}));
    for (int r = 0; r < 4; ++r) EXPECT_EQ(a.programs[r].actions, b.programs[r].actions);
  }
}

}  // namespace
}  // namespace tandem::schedule
