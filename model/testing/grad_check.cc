#include "model/testing/grad_check.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "model/init.h"

namespace tandem::model::testing {

Tensor RandomTensor(std::vector<int64_t> shape, uint64_t seed, float scale) {
  Tensor t = Tensor::Zeros(std::move(shape));
  InitUniform(seed, "random", scale, t);
  return t;
}

double DotDouble(const Tensor& a, const Tensor& b) {
  double s = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    s += static_cast<double>(a.data<float>()[i]) * b.data<float>()[i];
  }
  return s;
}

double MaxRelativeDifference(const float* a, const float* b, int64_t n) {
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

double MaxRelativeDifference(const Tensor& a, const Tensor& b) {
  return MaxRelativeDifference(a.data<float>(), b.data<float>(), std::min(a.numel(), b.numel()));
}

absl::StatusOr<GradCheckReport> CheckGradient(const std::string& name,
                                              const std::function<absl::StatusOr<double>()>& loss, const Tensor& x,
                                              const Tensor& analytic, const GradCheckOptions& options) {
  if (analytic.shape() != x.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": analytic gradient: expected shape ", ShapeString(x.shape()),
                                                   ", got ", ShapeString(analytic.shape())));
  }
  GradCheckReport report;
  const int64_t n = x.numel();
  const int64_t coords = std::min<int64_t>(n, options.max_coords);
  float* xp = x.data<float>();
  for (int64_t c = 0; c < coords; ++c) {
    const int64_t i = coords == n ? c : (c * n) / coords + (c * 7919) % std::max<int64_t>(1, n / coords);
    const float saved = xp[i];
    xp[i] = saved + options.eps;
    absl::StatusOr<double> plus = loss();
    xp[i] = saved - options.eps;
    absl::StatusOr<double> minus = loss();
    xp[i] = saved;
    if (!plus.ok() || !minus.ok()) {
      const absl::Status& s = plus.ok() ? minus.status() : plus.status();
      if (absl::IsAborted(s)) {
        ++report.skipped;
        continue;
      }
      return s;
    }
    const double fd = (*plus - *minus) / (2.0 * options.eps);
    const double an = analytic.data<float>()[i];
    const double err = std::fabs(fd - an);
    const double scale = std::max(std::fabs(fd), std::fabs(an));
    report.max_abs_err = std::max(report.max_abs_err, err);
    if (scale > 0) report.max_rel_err = std::max(report.max_rel_err, err / scale);
    ++report.checked;
    if (!(err <= options.atol + options.rtol * scale)) {
      return absl::InternalError(
          absl::StrCat("gradient mismatch at ", name, "[", i, "]: analytic ", an, ", finite difference ", fd));
    }
  }
  return report;
}

}  // namespace tandem::model::testing
