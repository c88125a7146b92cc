// -----------------------------------------------------------------------------
// File: device.h
// -----------------------------------------------------------------------------
//
// Device tensors for model/cuda: allocation (cudaMalloc, freed with the last
// copy of the Tensor; or a DevicePool for the tensors of one stream) and
// host <-> device transfers with f32 <-> bf16 conversion on the host side.
// Host code only.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Tensor xd, ToDevice(x_host, DType::kBF16));
//   TANDEM_ASSIGN_OR_RETURN(Tensor back, ToHost(xd));  // f32 host
#ifndef TANDEM_MODEL_CUDA_DEVICE_H_
#define TANDEM_MODEL_CUDA_DEVICE_H_

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/tensor.h"

namespace tandem::model::cuda {

// DeviceZeros()
//
// A zero-filled device tensor; kInvalidArgument for a negative dimension,
// CUDA errors as CudaStatus().
absl::StatusOr<Tensor> DeviceZeros(std::vector<int64_t> shape, DType dtype);

// DevicePool
//
// Reuses the device memory of tensors whose work all runs on one stream:
// when a tensor's last copy goes, its storage returns to the pool and a
// later Zeros() of the same byte size takes it, zeroed on the stream. This
// is safe because the stream orders every use before the reuse; work of
// another stream that reads a pool tensor must be waited on by this stream
// before the tensor is dropped (the cuda_local communicator does so for the
// buffers it sends). Memory goes back to CUDA once the pool and all its
// tensors are gone. Thread-safe.
class DevicePool : public std::enable_shared_from_this<DevicePool> {
 public:
  static std::shared_ptr<DevicePool> Create(cudaStream_t stream);
  ~DevicePool();

  // A zero-filled device tensor (cudaMemsetAsync on the stream).
  absl::StatusOr<Tensor> Zeros(std::vector<int64_t> shape, DType dtype = DType::kF32);
  // A device tensor holding a copy of the host bytes at `host` (as many as
  // the shape and dtype take), copied on the stream; from pageable memory
  // the call returns once the bytes have been staged.
  absl::StatusOr<Tensor> Copy(std::vector<int64_t> shape, const void* host, DType dtype = DType::kF32);
  cudaStream_t stream() const { return stream_; }

 private:
  explicit DevicePool(cudaStream_t stream) : stream_(stream) {}
  // Uninitialised storage for the tensor (a freed block of the same size,
  // else cudaMalloc); `bytes` receives its size.
  absl::StatusOr<Tensor> Take(std::vector<int64_t> shape, DType dtype, size_t* bytes);
  void Release(void* p, size_t bytes);

  const cudaStream_t stream_;
  absl::Mutex mu_;
  std::multimap<size_t, void*> free_ ABSL_GUARDED_BY(mu_);
};

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
