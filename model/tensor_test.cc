#include "model/tensor.h"

#include <cmath>
#include <cstring>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TensorTest, CreateZeroFilledAndShared) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Create({2, 3}));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.bytes(), 24u);
  for (float v : t.span()) EXPECT_EQ(v, 0.0f);
  Tensor alias = t;  // copies share storage
  alias.data<float>()[4] = 7.0f;
  EXPECT_EQ(t.data<float>()[4], 7.0f);
  Tensor deep = t.Clone();
  deep.data<float>()[4] = 1.0f;
  EXPECT_EQ(t.data<float>()[4], 7.0f);
  ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Create({4}, DType::kBF16));
  EXPECT_EQ(b.bytes(), 8u);
}

TEST(TensorTest, BadShapesRejected) {
  EXPECT_THAT(Tensor::Create({2, -1}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected >= 0, got -1")));
  EXPECT_THAT(Tensor::Create({1 << 21, 1 << 21}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2^40")));
  EXPECT_THAT(Tensor::FromVector({2, 2}, {1.0f, 2.0f}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 4 values, got 2")));
  Tensor t = Tensor::Zeros({2, 3});
  EXPECT_THAT(t.CheckShape("x", {3, 2}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x: expected shape [3, 2], got [2, 3]")));
}

// bf16 rounding: to nearest, ties to even, NaN kept.
TEST(TensorTest, Bf16RoundTrip) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1.0078125 and 1.015625: even is 1.015625.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3.0f / 256)), 1.015625f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  for (float f : {0.1f, -3.7f, 1e-20f, 65504.0f}) {
    EXPECT_NEAR(Bf16ToFloat(FloatToBf16(f)), f, std::fabs(f) / 256);
  }
}

}  // namespace
}  // namespace tandem::model
