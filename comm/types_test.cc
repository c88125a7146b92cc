#include "comm/types.h"

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

// Integers up to 256 round-trip exactly through bf16 and up to 2048 through
// f16; halfway cases round to even.
TEST(TypesTest, SixteenBitConversions) {
  for (int i = -256; i <= 256; ++i) EXPECT_EQ(Bf16ToFloat(FloatToBf16(i)), i);
  for (int i = -2048; i <= 2048; ++i) EXPECT_EQ(F16ToFloat(FloatToF16(i)), i);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(257.0f)), 256.0f);  // tie to even
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(259.0f)), 260.0f);
  EXPECT_EQ(F16ToFloat(FloatToF16(2049.0f)), 2048.0f);
  EXPECT_EQ(F16ToFloat(FloatToF16(1e6f)), INFINITY);
  EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(NAN))));
  EXPECT_EQ(F16ToFloat(FloatToF16(5.960464477539063e-08f)), 5.960464477539063e-08f);  // smallest subnormal
}

TEST(TypesTest, ReduceAndAverage) {
  float acc[3] = {1, 5, -2};
  const float x[3] = {2, 3, -4};
  ReduceInto(DataType::kF32, ReduceOp::kMax, acc, x, 3);
  EXPECT_EQ(acc[1], 5);
  EXPECT_EQ(acc[2], -2);
  ReduceInto(DataType::kF32, ReduceOp::kSum, acc, x, 3);
  EXPECT_EQ(acc[0], 4);
  FinishAverage(DataType::kF32, acc, 3, 2);
  EXPECT_EQ(acc[0], 2);
  EXPECT_EQ(SizeOf(DataType::kBF16), 2);
  EXPECT_EQ(DataTypeName(DataType::kI64), "i64");
}

}  // namespace
}  // namespace tandem::comm
