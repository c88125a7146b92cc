// -----------------------------------------------------------------------------
// File: smoke_kernel.h
// -----------------------------------------------------------------------------
//
// A tiny kernel that proves the toolchain end to end: nvcc compiled it for
// sm_90 (+PTX), the static cudart launches it, and the host checks the result.

#ifndef TANDEM_THIRD_PARTY_CUDA_SMOKE_KERNEL_H_
#define TANDEM_THIRD_PARTY_CUDA_SMOKE_KERNEL_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace tandem {

// Enqueues y[i] = a * x[i] + y[i] for i < n on `stream` (device pointers).
cudaError_t EnqueueSaxpy(float a, const float* x, float* y, int64_t n, cudaStream_t stream);

}  // namespace tandem

#endif  // TANDEM_THIRD_PARTY_CUDA_SMOKE_KERNEL_H_
