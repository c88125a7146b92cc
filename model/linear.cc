#include "model/linear.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/init.h"
#include "model/internal/cpu_gemm.h"

namespace tandem::model {

Linear::Linear(std::string name, int64_t in, int64_t out)
    : in_(in), out_(out), weight_(MakeParameter(name + ".weight", {out, in})) {}

void Linear::Init(uint64_t seed, float scale) {
  InitUniform(seed, weight_.name, scale / std::sqrt(static_cast<float>(in_)), weight_.value);
}

absl::StatusOr<Tensor> Linear::Forward(const Tensor& x, Saved* saved) const {
  if (x.rank() != 2 || x.dim(1) != in_ || !x.is_host() || x.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(weight_.name, ": input: expected a host f32 shape [T, ", in_, "], got ", ShapeString(x.shape())));
  }
  Tensor y = Tensor::Zeros({x.dim(0), out_});
  internal::MatMulNT(x.data<float>(), weight_.value.data<float>(), y.data<float>(), x.dim(0), out_, in_,
                     /*accumulate=*/false);
  if (saved != nullptr) saved->x = x;
  return y;
}

absl::StatusOr<Tensor> Linear::BackwardInput(const Saved& saved, const Tensor& dy) const {
  const int64_t t = saved.x.dim(0);
  if (dy.rank() != 2 || dy.dim(0) != t || dy.dim(1) != out_) {
    return absl::InvalidArgumentError(absl::StrCat(weight_.name, ": output gradient: expected shape ",
                                                   ShapeString({t, out_}), ", got ", ShapeString(dy.shape())));
  }
  Tensor dx = Tensor::Zeros({t, in_});
  internal::MatMulNN(dy.data<float>(), weight_.value.data<float>(), dx.data<float>(), t, in_, out_);
  return dx;
}

void Linear::BackwardWeight(const Saved& saved, const Tensor& dy, WeightGradStore* store) {
  DeferOrRun(store, [x = saved.x, dy, grad = weight_.grad] { AccumulateWeightGrad(dy, x, grad); });
}

void AccumulateWeightGrad(const Tensor& dy, const Tensor& x, const Tensor& grad) {
  internal::MatMulTN(dy.data<float>(), x.data<float>(), grad.data<float>(), dy.dim(1), x.dim(1), dy.dim(0));
}

}  // namespace tandem::model
