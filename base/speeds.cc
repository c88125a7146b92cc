#include "base/speeds.h"

#include <cmath>
#include <cstddef>

#include "absl/strings/str_format.h"

namespace tandem {

absl::Status CheckSpeeds(absl::string_view name, absl::Span<const double> speeds) {
  for (size_t i = 0; i < speeds.size(); ++i) {
    if (!(speeds[i] > 0) || std::isinf(speeds[i])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s[%d]: expected a finite speed > 0, got %g", name, i, speeds[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem
