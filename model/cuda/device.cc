#include "model/cuda/device.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"

namespace tandem::model::cuda {

absl::StatusOr<Tensor> DeviceZeros(std::vector<int64_t> shape, DType dtype) {
  TANDEM_ASSIGN_OR_RETURN(Tensor probe, Tensor::Create(shape, DType::kF32));
  const size_t bytes = static_cast<size_t>(probe.numel()) * SizeOf(dtype);
  void* p = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, bytes == 0 ? 1 : bytes));
  return Tensor::FromStorage(std::move(shape), dtype, Device::kCuda,
                             std::shared_ptr<void>(p, [](void* q) { cudaFree(q); }));
}

absl::StatusOr<Tensor> ToDevice(const Tensor& host, DType dtype) {
  if (!host.is_host() || host.dtype() != DType::kF32) {
    return absl::InvalidArgumentError("to device: expected a host f32 tensor");
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor d, DeviceZeros(host.shape(), dtype));
  if (dtype == DType::kF32) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(d.raw(), host.raw(), host.bytes(), cudaMemcpyHostToDevice));
  } else {
    std::vector<uint16_t> b(host.numel());
    for (int64_t i = 0; i < host.numel(); ++i) b[i] = FloatToBf16(host.data<float>()[i]);
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(d.raw(), b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  }
  return d;
}

absl::StatusOr<Tensor> ToHost(const Tensor& device) {
  if (device.is_host()) return absl::InvalidArgumentError("to host: expected a device tensor");
  Tensor h = Tensor::Zeros(device.shape());
  if (device.dtype() == DType::kF32) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(h.raw(), device.raw(), device.bytes(), cudaMemcpyDeviceToHost));
  } else {
    std::vector<uint16_t> b(device.numel());
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.data(), device.raw(), b.size() * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < device.numel(); ++i) h.data<float>()[i] = Bf16ToFloat(b[i]);
  }
  return h;
}

}  // namespace tandem::model::cuda
