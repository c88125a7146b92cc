// GPU GEMMs and RMSNorm kernels against the CPU layers. Skips without a GPU.
#include "model/cuda/gemm.h"

#include <algorithm>
#include <cmath>

#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "model/cuda/device.h"
#include "model/cuda/layer_kernels.h"
#include "model/init.h"
#include "model/linear.h"
#include "model/rmsnorm.h"
#include "model/testing/grad_check.h"

namespace tandem::model::cuda {
namespace {

using ::tandem::model::testing::MaxRelativeDifference;
using ::tandem::model::testing::RandomTensor;

// The three Linear GEMMs (y = x W^T, dx = dy W, dW = dy^T x) on cuBLAS,
// f32 (tolerance 1e-5) and bf16 operands (2e-2), relative to the largest
// magnitude.
TEST(GemmTest, LinearGemmsMatchCpu) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  ASSERT_OK_AND_ASSIGN(auto blas, Blas::Create(nullptr));
  const int64_t t = 37, in = 96, out = 80;
  Linear lin("l", in, out);
  lin.Init(1);
  Tensor x = RandomTensor({t, in}, 2);
  Tensor dy = RandomTensor({t, out}, 3);
  Linear::Saved saved;
  ASSERT_OK_AND_ASSIGN(Tensor y_cpu, lin.Forward(x, &saved));
  ASSERT_OK_AND_ASSIGN(Tensor dx_cpu, lin.BackwardInput(saved, dy));
  lin.BackwardWeight(saved, dy, nullptr);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const double tol = dt == DType::kF32 ? 1e-5 : 2e-2;
    ASSERT_OK_AND_ASSIGN(Tensor xd, ToDevice(x, dt));
    ASSERT_OK_AND_ASSIGN(Tensor wd, ToDevice(lin.weight().value, dt));
    ASSERT_OK_AND_ASSIGN(Tensor dyd, ToDevice(dy, dt));
    ASSERT_OK_AND_ASSIGN(Tensor yd, DeviceZeros({t, out}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor dxd, DeviceZeros({t, in}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor dwd, DeviceZeros({out, in}, DType::kF32));
    ASSERT_OK(blas->Gemm({false, true, t, out, in}, xd.raw(), dt, wd.raw(), yd.data<float>(), 1, 0));
    ASSERT_OK(blas->Gemm({false, false, t, in, out}, dyd.raw(), dt, wd.raw(), dxd.data<float>(), 1, 0));
    ASSERT_OK(blas->Gemm({true, false, out, in, t}, dyd.raw(), dt, xd.raw(), dwd.data<float>(), 1, 0));
    ASSERT_OK_AND_ASSIGN(Tensor y, ToHost(yd));
    ASSERT_OK_AND_ASSIGN(Tensor dx, ToHost(dxd));
    ASSERT_OK_AND_ASSIGN(Tensor dw, ToHost(dwd));
    EXPECT_LE(MaxRelativeDifference(y, y_cpu), tol) << DTypeName(dt);
    EXPECT_LE(MaxRelativeDifference(dx, dx_cpu), tol) << DTypeName(dt);
    EXPECT_LE(MaxRelativeDifference(dw, lin.weight().grad), tol) << DTypeName(dt);
  }
  // Must-fail twin: a transposed operand gives a different result.
  ASSERT_OK_AND_ASSIGN(Tensor xd, ToDevice(x));
  ASSERT_OK_AND_ASSIGN(Tensor wd, ToDevice(lin.weight().value));
  ASSERT_OK_AND_ASSIGN(Tensor yd, DeviceZeros({t, out}, DType::kF32));
  ASSERT_OK(blas->Gemm({false, false, t, out, in}, xd.raw(), DType::kF32, wd.raw(), yd.data<float>(), 1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor wrong, ToHost(yd));
  EXPECT_GT(MaxRelativeDifference(wrong, y_cpu), 0.1);
  EXPECT_THAT(blas->Gemm({false, false, -1, 1, 1}, nullptr, DType::kF32, nullptr, nullptr, 1, 0),
              ::tandem::testing::StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("m=-1")));
}

// RMSNorm forward and backward kernels against the CPU layer (1e-5).
TEST(KernelsTest, RmsNormMatchesCpu) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const int64_t t = 19, h = 300;
  RmsNorm norm("n", h, 1e-6f);
  InitUniform(4, "g", 1.0f, norm.weight().value);
  Tensor x = RandomTensor({t, h}, 5);
  Tensor dy = RandomTensor({t, h}, 6);
  RmsNorm::Saved saved;
  ASSERT_OK_AND_ASSIGN(Tensor y_cpu, norm.Forward(x, &saved));
  ASSERT_OK_AND_ASSIGN(Tensor dx_cpu, norm.Backward(saved, dy, nullptr));
  ASSERT_OK_AND_ASSIGN(Tensor xd, ToDevice(x));
  ASSERT_OK_AND_ASSIGN(Tensor gd, ToDevice(norm.weight().value));
  ASSERT_OK_AND_ASSIGN(Tensor dyd, ToDevice(dy));
  ASSERT_OK_AND_ASSIGN(Tensor yd, DeviceZeros({t, h}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor rd, DeviceZeros({t}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor dxd, DeviceZeros({t, h}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor dgd, DeviceZeros({h}, DType::kF32));
  ASSERT_EQ(EnqueueRmsNormForward(xd.data<float>(), gd.data<float>(), yd.data<float>(), rd.data<float>(), t, h, 1e-6f,
                                  nullptr),
            cudaSuccess);
  ASSERT_EQ(EnqueueRmsNormBackward(xd.data<float>(), gd.data<float>(), rd.data<float>(), dyd.data<float>(),
                                   dxd.data<float>(), dgd.data<float>(), t, h, nullptr),
            cudaSuccess);
  ASSERT_OK_AND_ASSIGN(Tensor y, ToHost(yd));
  ASSERT_OK_AND_ASSIGN(Tensor dx, ToHost(dxd));
  ASSERT_OK_AND_ASSIGN(Tensor dg, ToHost(dgd));
  EXPECT_LE(MaxRelativeDifference(y, y_cpu), 1e-5);
  EXPECT_LE(MaxRelativeDifference(dx, dx_cpu), 1e-5);
  EXPECT_LE(MaxRelativeDifference(dg, norm.weight().grad), 1e-5);
  // bf16 round trip on the device equals the host conversion.
  ASSERT_OK_AND_ASSIGN(Tensor low, DeviceZeros({t, h}, DType::kBF16));
  ASSERT_EQ(EnqueueF32ToBf16(xd.data<float>(), low.data<uint16_t>(), t * h, nullptr), cudaSuccess);
  ASSERT_OK_AND_ASSIGN(Tensor back, ToHost(low));
  for (int64_t i = 0; i < t * h; ++i) {
    ASSERT_EQ(back.data<float>()[i], Bf16ToFloat(FloatToBf16(x.data<float>()[i])));
  }
}

}  // namespace
}  // namespace tandem::model::cuda
