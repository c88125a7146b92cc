#include "base/speeds.h"

#include <cmath>
#include <limits>
#include <vector>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CheckSpeedsTest, AcceptsFinitePositiveSpeedsAndNone) {
  EXPECT_TRUE(CheckSpeeds("gpu_speed", {}).ok());
  EXPECT_TRUE(CheckSpeeds("gpu_speed", {1.0, 0.5, 1e-300, 3e300}).ok());
}

TEST(CheckSpeedsTest, NamesTheFirstBadItem) {
  const double inf = std::numeric_limits<double>::infinity();
  const struct {
    std::vector<double> speeds;
    const char* want;
  } cases[] = {
      {{1, 0}, "rank_speed[1]: expected a finite speed > 0, got 0"},
      {{-2, 0}, "rank_speed[0]: expected a finite speed > 0, got -2"},
      {{1, 1, std::nan("")}, "rank_speed[2]: expected a finite speed > 0, got nan"},
      {{inf}, "rank_speed[0]: expected a finite speed > 0, got inf"},
      {{1, -inf}, "rank_speed[1]: expected a finite speed > 0, got -inf"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(CheckSpeeds("rank_speed", c.speeds), StatusIs(absl::StatusCode::kInvalidArgument, c.want));
  }
  // The name is the caller's, prefix and all.
  EXPECT_THAT(CheckSpeeds("cost: rank_speed", {0.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cost: rank_speed[0]: ")));
}

}  // namespace
}  // namespace tandem
