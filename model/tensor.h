// -----------------------------------------------------------------------------
// File: tensor.h
// -----------------------------------------------------------------------------
//
// The minimal tensor of //model: a shape, a dtype (f32 or bf16) and storage
// in host or device memory. Copies share storage (like torch.Tensor), so a
// deferred weight-gradient closure can keep an activation alive by capturing
// it; Clone() makes a deep host copy. Device tensors are made by
// model/cuda (this file has no CUDA dependency).
//
// Example:
//   Tensor x = Tensor::Zeros({tokens, hidden});
//   float* p = x.data<float>();
//   TANDEM_RETURN_IF_ERROR(x.CheckShape("moe input", {tokens, hidden}));
#ifndef TANDEM_MODEL_TENSOR_H_
#define TANDEM_MODEL_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/bf16.h"

namespace tandem::model {

enum class DType : uint8_t { kF32, kBF16 };
enum class Device : uint8_t { kHost, kCuda };

size_t SizeOf(DType t);
absl::string_view DTypeName(DType t);  // "f32", "bf16"

// ShapeString()
//
// "[2, 3]".
std::string ShapeString(absl::Span<const int64_t> shape);

class Tensor {
 public:
  // An empty f32 host tensor of shape [0].
  Tensor();

  // Tensor::Create()
  //
  // A zero-filled host tensor. kInvalidArgument for a negative dimension or
  // more than 2^40 elements.
  static absl::StatusOr<Tensor> Create(std::vector<int64_t> shape, DType dtype = DType::kF32);

  // Tensor::Zeros()
  //
  // As Create() for shapes the caller has validated (every entry >= 0).
  static Tensor Zeros(std::vector<int64_t> shape, DType dtype = DType::kF32);

  // Tensor::FromStorage()
  //
  // Wraps existing storage of at least numel * SizeOf(dtype) bytes (used by
  // model/cuda for device memory). The deleter of `data` frees it.
  static Tensor FromStorage(std::vector<int64_t> shape, DType dtype, Device device, std::shared_ptr<void> data);

  // Tensor::FromVector()
  //
  // A host f32 tensor holding `values`; kInvalidArgument when the element
  // count of `shape` differs from values.size().
  static absl::StatusOr<Tensor> FromVector(std::vector<int64_t> shape, absl::Span<const float> values);

  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return static_cast<size_t>(numel_) * SizeOf(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_host() const { return device_ == Device::kHost; }

  template <typename T>
  T* data() const {
    return static_cast<T*>(data_.get());
  }
  void* raw() const { return data_.get(); }
  // The storage, shared with every copy of this tensor.
  const std::shared_ptr<void>& storage() const { return data_; }

  // Tensor::span()
  //
  // The elements of a host f32 tensor.
  absl::Span<float> span() const { return absl::Span<float>(data<float>(), static_cast<size_t>(numel_)); }

  // Tensor::Clone()
  //
  // A deep copy with its own storage (host tensors only).
  Tensor Clone() const;

  // Tensor::CheckShape()
  //
  // kInvalidArgument "<what>: expected shape [a, b], got [c, d]" unless the
  // shape equals `want`.
  absl::Status CheckShape(absl::string_view what, absl::Span<const int64_t> want) const;

  // Tensor::SetZero()
  //
  // Fills a host tensor with zeros.
  void SetZero() const;

 private:
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kHost;
  std::shared_ptr<void> data_;
};

// AddTo()
//
// dst += src elementwise (host f32, same element count).
void AddTo(const Tensor& dst, const Tensor& src);

// Parameter
//
// One trainable tensor (f32, host) with its gradient and optimizer slots.
// `name` is the checkpoint name (model/README.md lists the scheme). The
// optimizer state moves with the parameter when experts are re-placed.
struct Parameter {
  std::string name;
  Tensor value;
  Tensor grad;
  std::vector<float> state[2];  // SGD: [0] = momentum; AdamW: m, v
  bool decay = true;            // AdamW weight decay applies (not norms)
};

// MakeParameter()
//
// A parameter with zero value and gradient of the given (validated) shape.
Parameter MakeParameter(std::string name, std::vector<int64_t> shape, bool decay = true);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_TENSOR_H_
