// GPU smoke test: device query plus a checked kernel. Skips without a GPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "third_party/cuda/smoke_kernel.h"

namespace tandem {
namespace {

absl::Status RunSaxpy(int64_t n, std::vector<float>* y_host) {
  std::vector<float> x(n);
  y_host->resize(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i % 1024);
    (*y_host)[i] = static_cast<float>((i * 7) % 1024);
  }
  float* x_dev = nullptr;
  float* y_dev = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&x_dev, n * sizeof(float)));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&y_dev, n * sizeof(float)));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(x_dev, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(y_dev, y_host->data(), n * sizeof(float), cudaMemcpyHostToDevice));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSaxpy(2.0f, x_dev, y_dev, n, nullptr));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(y_host->data(), y_dev, n * sizeof(float), cudaMemcpyDeviceToHost));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaFree(x_dev));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaFree(y_dev));
  return absl::OkStatus();
}

TEST(GpuSmokeTest, DeviceQueryAndSaxpy) {
  const int gpus = VisibleGpuCount();
  if (gpus == 0) GTEST_SKIP() << "no GPU visible (no driver or no device)";
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::printf("gpus=%d device0=%s sm_%d%d mem=%.1f GiB sms=%d runtime=%d driver=%d\n", gpus, prop.name, prop.major,
              prop.minor, prop.totalGlobalMem / double(1 << 30), prop.multiProcessorCount, runtime, driver);

  const int64_t n = (int64_t{1} << 20) + 3;
  std::vector<float> y;
  ASSERT_OK(RunSaxpy(n, &y));
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Every value is an exactly representable integer below 2^24.
    const float expected = 2.0f * (i % 1024) + (i * 7) % 1024;
    wrong += y[i] != expected;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(GpuSmokeTest, CudaStatusNamesTheExpression) {
  // Works without a GPU: the conversion itself is host code.
  absl::Status s = CudaStatus(cudaErrorInvalidValue, "cudaMemcpy(a, b)", "f.cc", 7);
  EXPECT_THAT(s, testing::StatusIs(absl::StatusCode::kInternal,
                                   ::testing::HasSubstr("cudaMemcpy(a, b) at f.cc:7: cudaErrorInvalidValue")));
  EXPECT_OK(CudaStatus(cudaSuccess, "x", "f.cc", 1));
}

}  // namespace
}  // namespace tandem
