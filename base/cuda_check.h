// -----------------------------------------------------------------------------
// File: cuda_check.h
// -----------------------------------------------------------------------------
//
// CUDA runtime errors as absl::Status, and a GPU count that is 0 (not an
// error) on machines without a driver or a device. Host code only.
//
// Example:
//   TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, kind, stream));
//   if (tandem::VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";

#ifndef TANDEM_BASE_CUDA_CHECK_H_
#define TANDEM_BASE_CUDA_CHECK_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"

namespace tandem {

// CudaStatus()
//
// OK for cudaSuccess. Otherwise kUnavailable when no usable device or driver
// is present, else kInternal, with the message
// "<expr> at <file>:<line>: <cudaErrorName>: <description>".
absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line);

// VisibleGpuCount()
//
// The number of CUDA devices this process can use; 0 when the driver, the
// device or the runtime is missing. Clears the resulting sticky error.
int VisibleGpuCount();

}  // namespace tandem

// TANDEM_CUDA_RETURN_IF_ERROR()
//
// Evaluates a cudaError_t expression and returns CudaStatus() from the
// enclosing function if it is not cudaSuccess.
#define TANDEM_CUDA_RETURN_IF_ERROR(expr)                                         \
  do {                                                                            \
    const cudaError_t tandem_cuda_error_ = (expr);                                \
    if (tandem_cuda_error_ != cudaSuccess) {                                      \
      return ::tandem::CudaStatus(tandem_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)

#endif  // TANDEM_BASE_CUDA_CHECK_H_
