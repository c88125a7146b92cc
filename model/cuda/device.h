// -----------------------------------------------------------------------------
// File: device.h
// -----------------------------------------------------------------------------
//
// Device tensors for model/cuda: allocation (cudaMalloc, freed with the last
// copy of the Tensor) and host <-> device transfers with f32 <-> bf16
// conversion on the host side. Host code only.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Tensor xd, ToDevice(x_host, DType::kBF16));
//   TANDEM_ASSIGN_OR_RETURN(Tensor back, ToHost(xd));  // f32 host
#ifndef TANDEM_MODEL_CUDA_DEVICE_H_
#define TANDEM_MODEL_CUDA_DEVICE_H_

#include <cuda_runtime.h>

#include <vector>

#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace tandem::model::cuda {

// DeviceZeros()
//
// A zero-filled device tensor; kInvalidArgument for a negative dimension,
// CUDA errors as CudaStatus().
absl::StatusOr<Tensor> DeviceZeros(std::vector<int64_t> shape, DType dtype);

// ToDevice()
//
// Copies a host f32 tensor to the device as `dtype` (bf16: rounded to
// nearest even on the host). Synchronous.
absl::StatusOr<Tensor> ToDevice(const Tensor& host, DType dtype = DType::kF32);

// ToHost()
//
// Copies a device tensor back as a host f32 tensor. Synchronous.
absl::StatusOr<Tensor> ToHost(const Tensor& device);

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_DEVICE_H_
