#include "third_party/cuda/smoke_kernel.h"

namespace tandem {
namespace {

__global__ void SaxpyKernel(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = a * x[i] + y[i];
  }
}

}  // namespace

cudaError_t EnqueueSaxpy(float a, const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 4096));
  SaxpyKernel<<<blocks, threads, 0, stream>>>(a, x, y, n);
  return cudaGetLastError();
}

}  // namespace tandem
