#include "model/cuda/device.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"

namespace tandem::model::cuda {

namespace {

// Bytes of a tensor of `shape`; the checks of Tensor::Create without its
// host allocation.
absl::StatusOr<size_t> Bytes(const std::vector<int64_t>& shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d)) {
      return absl::InvalidArgumentError(absl::StrCat("device tensor: bad shape ", ShapeString(shape)));
    }
    n *= d;
  }
  return static_cast<size_t>(n) * SizeOf(dtype);
}

}  // namespace

absl::StatusOr<Tensor> DeviceZeros(std::vector<int64_t> shape, DType dtype) {
  TANDEM_ASSIGN_OR_RETURN(const size_t bytes, Bytes(shape, dtype));
  void* p = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, bytes == 0 ? 1 : bytes));
  return Tensor::FromStorage(std::move(shape), dtype, Device::kCuda,
                             std::shared_ptr<void>(p, [](void* q) { cudaFree(q); }));
}

std::shared_ptr<DevicePool> DevicePool::Create(cudaStream_t stream) {
  return std::shared_ptr<DevicePool>(new DevicePool(stream));
}

DevicePool::~DevicePool() {
  for (auto& [bytes, p] : free_) cudaFree(p);
}

void DevicePool::Release(void* p, size_t bytes) {
  absl::MutexLock lock(&mu_);
  free_.emplace(bytes, p);
}

absl::StatusOr<Tensor> DevicePool::Take(std::vector<int64_t> shape, DType dtype, size_t* bytes) {
  TANDEM_ASSIGN_OR_RETURN(*bytes, Bytes(shape, dtype));
  const size_t size = std::max<size_t>(*bytes, 1);
  void* p = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = free_.find(size);
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
    }
  }
  if (p == nullptr) TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, size));
  std::shared_ptr<DevicePool> self = shared_from_this();
  return Tensor::FromStorage(std::move(shape), dtype, Device::kCuda,
                             std::shared_ptr<void>(p, [self, size](void* q) { self->Release(q, size); }));
}

absl::StatusOr<Tensor> DevicePool::Zeros(std::vector<int64_t> shape, DType dtype) {
  size_t bytes = 0;
  TANDEM_ASSIGN_OR_RETURN(Tensor t, Take(std::move(shape), dtype, &bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(t.raw(), 0, std::max<size_t>(bytes, 1), stream_));
  return t;
}

absl::StatusOr<Tensor> DevicePool::Copy(std::vector<int64_t> shape, const void* host, DType dtype) {
  size_t bytes = 0;
  TANDEM_ASSIGN_OR_RETURN(Tensor t, Take(std::move(shape), dtype, &bytes));
  if (bytes > 0) TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(t.raw(), host, bytes, cudaMemcpyHostToDevice, stream_));
  return t;
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
