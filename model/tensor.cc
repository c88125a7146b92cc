#include "model/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem::model {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;

int64_t CountElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<void> AllocateHost(size_t bytes) {
  // 64-byte aligned, zero-filled; at least one byte so data() is non-null.
  size_t size = (bytes + 63) / 64 * 64;
  if (size == 0) size = 64;
  void* p = std::aligned_alloc(64, size);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, size);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace

size_t SizeOf(DType t) { return t == DType::kF32 ? 4 : 2; }

absl::string_view DTypeName(DType t) { return t == DType::kF32 ? "f32" : "bf16"; }

std::string ShapeString(absl::Span<const int64_t> shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

Tensor::Tensor() : shape_{0}, data_(AllocateHost(0)) {}

absl::StatusOr<Tensor> Tensor::Create(std::vector<int64_t> shape, DType dtype) {
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor shape ", ShapeString(shape), ": dimension ", i, ": expected >= 0, got ", shape[i]));
    }
    if (shape[i] > 0 && n > kMaxElements / shape[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor shape ", ShapeString(shape), ": expected at most 2^40 elements"));
    }
    n *= shape[i];
  }
  return Zeros(std::move(shape), dtype);
}

Tensor Tensor::Zeros(std::vector<int64_t> shape, DType dtype) {
  Tensor t;
  t.numel_ = CountElements(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.data_ = AllocateHost(t.bytes());
  return t;
}

Tensor Tensor::FromStorage(std::vector<int64_t> shape, DType dtype, Device device, std::shared_ptr<void> data) {
  Tensor t;
  t.numel_ = CountElements(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.data_ = std::move(data);
  return t;
}

absl::StatusOr<Tensor> Tensor::FromVector(std::vector<int64_t> shape, absl::Span<const float> values) {
  absl::StatusOr<Tensor> t = Create(shape);
  if (!t.ok()) return t.status();
  if (t->numel() != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor shape ", ShapeString(shape), ": expected ", t->numel(), " values, got ", values.size()));
  }
  if (!values.empty()) {
    std::memcpy(t->data<float>(), values.data(), values.size() * 4);
  }
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Zeros(shape_, dtype_);
  if (bytes() > 0) std::memcpy(t.raw(), raw(), bytes());
  return t;
}

absl::Status Tensor::CheckShape(absl::string_view what, absl::Span<const int64_t> want) const {
  if (absl::Span<const int64_t>(shape_) == want) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": expected shape ", ShapeString(want), ", got ", ShapeString(shape_)));
}

void Tensor::SetZero() const {
  if (bytes() > 0) std::memset(raw(), 0, bytes());
}

void AddTo(const Tensor& dst, const Tensor& src) {
  float* p = dst.data<float>();
  const float* q = src.data<float>();
  for (int64_t i = 0; i < dst.numel(); ++i) p[i] += q[i];
}

Parameter MakeParameter(std::string name, std::vector<int64_t> shape, bool decay) {
  Parameter p;
  p.name = std::move(name);
  p.value = Tensor::Zeros(shape);
  p.grad = Tensor::Zeros(std::move(shape));
  p.decay = decay;
  return p;
}

}  // namespace tandem::model
