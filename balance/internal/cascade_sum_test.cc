#include "balance/internal/cascade_sum.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::balance::internal {
namespace {

// Values whose float32 sum depends on the order: 2^24 absorbs a lone 1.
constexpr float kBig = 16777216.0f;

// n = 5 (scalar path): p0 = x0 + x4, p1..p3 = x1..x3, ((p0+p1)+p2)+p3.
TEST(CascadeSumTest, ScalarPathOrder) {
  const std::vector<float> x = {kBig, 1.0f, 1.0f, 1.0f, 1.0f};
  const float expected = (((0.0f + x[0] + x[4]) + x[1]) + x[2]) + x[3];
  EXPECT_EQ(CascadeSum(x.data(), 5), expected);
  // A left fold gives the same here, but not for this order of values:
  const std::vector<float> y = {1.0f, kBig, 1.0f, 1.0f, 1.0f};
  const float y_expected = (((0.0f + y[0] + y[4]) + y[1]) + y[2]) + y[3];
  EXPECT_EQ(CascadeSum(y.data(), 5), y_expected);
  EXPECT_EQ(y_expected, kBig + 4.0f);  // 1 + 1 = 2 survives next to 2^24
  float left_fold = 0.0f;
  for (float v : y) left_fold += v;
  EXPECT_NE(left_fold, y_expected);  // so the order is really tested
}

TEST(CascadeSumTest, ShortRowsFoldLeft) {
  const std::vector<float> x = {kBig, 1.0f, 1.0f};
  EXPECT_EQ(CascadeSum(x.data(), 3), ((0.0f + kBig) + 1.0f) + 1.0f);
  EXPECT_EQ(CascadeSum(x.data(), 0), 0.0f);
}

// n = 36 with 8 lanes: lane l = ((v0+v1)+v2)+v3 over v_k = x[8k + l]; the
// tail x[32..35] is summed from 0 first, then lanes 0..7 are added.
TEST(CascadeSumTest, VectorPathOrder) {
  std::vector<float> x(36);
  for (int i = 0; i < 36; ++i) x[i] = (i % 5 == 0) ? kBig : 1.0f + i % 3;
  float lanes[8];
  for (int l = 0; l < 8; ++l) {
    lanes[l] = (((0.0f + x[l]) + x[8 + l]) + x[16 + l]) + x[24 + l];
  }
  float expected = 0.0f;
  for (int i = 32; i < 36; ++i) expected += x[i];
  for (float lane : lanes) expected += lane;
  EXPECT_EQ(CascadeSum(x.data(), 36), expected);
}

// 16 lanes (ATEN_CPU_CAPABILITY=avx512) for n = 20: one vector, tail first.
TEST(CascadeSumTest, Avx512LaneCount) {
  std::vector<float> x(20, 1.0f);
  x[16] = kBig;
  float expected = 0.0f;
  for (int i = 16; i < 20; ++i) expected += x[i];
  for (int l = 0; l < 16; ++l) expected += 0.0f + x[l];
  EXPECT_EQ(CascadeSum(x.data(), 20, 16), expected);
  EXPECT_NE(CascadeSum(x.data(), 20, 16), CascadeSum(x.data(), 20, 8));
}

// Long rows go through the accumulator cascade; exact inputs sum exactly.
TEST(CascadeSumTest, LongRowsOfIntegersAreExact) {
  for (int n : {63, 64, 65, 511, 512, 4096, 70001}) {
    std::vector<float> x(n);
    int64_t exact = 0;
    for (int i = 0; i < n; ++i) {
      x[i] = static_cast<float>(i % 97);
      exact += i % 97;
    }
    EXPECT_EQ(CascadeSum(x.data(), n), static_cast<float>(exact)) << n;
  }
}

}  // namespace
}  // namespace tandem::balance::internal
