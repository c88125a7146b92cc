// -----------------------------------------------------------------------------
// File: grad_check.h
// -----------------------------------------------------------------------------
//
// Test support: central finite differences against an analytic gradient, in
// f32 with stated tolerances. A coordinate passes when
//   |fd - an| <= atol + rtol * max(|fd|, |an|),
// fd = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps), L evaluated in double
// from f32 forwards. Tolerances are chosen per test (model/README.md lists
// them); every check has a twin test where a corrupted gradient fails.
#ifndef TANDEM_MODEL_TESTING_GRAD_CHECK_H_
#define TANDEM_MODEL_TESTING_GRAD_CHECK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace tandem::model::testing {

// A host f32 tensor with values scale * U(-1, 1) from `seed`.
Tensor RandomTensor(std::vector<int64_t> shape, uint64_t seed, float scale = 1.0f);

// sum_i a[i] * b[i] in double.
double DotDouble(const Tensor& a, const Tensor& b);

// MaxRelativeDifference()
//
// max_i |a[i] - b[i]| / max_i |b[i]| over n values (host f32): the error
// measure of the EP and GPU comparisons (b is the reference).
double MaxRelativeDifference(const float* a, const float* b, int64_t n);
double MaxRelativeDifference(const Tensor& a, const Tensor& b);

struct GradCheckOptions {
  float eps = 1e-2f;
  double rtol = 2e-2;
  double atol = 1e-3;
  int max_coords = 48;  // checked coordinates, spread evenly over x
};

struct GradCheckReport {
  int checked = 0;
  int skipped = 0;  // loss returned kAborted (e.g. routing changed)
  double max_abs_err = 0.0;
  double max_rel_err = 0.0;
};

// CheckGradient()
//
// Perturbs coordinates of `x` in place (restoring them) and compares the
// finite difference of `loss` with `analytic` (same shape as x). `loss` may
// return kAborted to skip a coordinate. Returns the report, or kInternal
// "gradient mismatch at <name>[i]: analytic A, finite difference F" for the
// first coordinate out of tolerance; loss errors other than kAborted pass
// through.
absl::StatusOr<GradCheckReport> CheckGradient(const std::string& name,
                                              const std::function<absl::StatusOr<double>()>& loss, const Tensor& x,
                                              const Tensor& analytic, const GradCheckOptions& options);

}  // namespace tandem::model::testing

#endif  // TANDEM_MODEL_TESTING_GRAD_CHECK_H_
