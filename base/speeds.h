// -----------------------------------------------------------------------------
// File: speeds.h
// -----------------------------------------------------------------------------
//
// Relative speeds (of GPUs, of pipeline ranks) are multipliers: each must be
// a finite number > 0. EPLB's speed-aware solve, its metrics, the stage
// partitioner, the trainer and the simulator all take such lists and refuse
// a bad one with the same words.
//
// Example:
//   TANDEM_RETURN_IF_ERROR(CheckSpeeds("gpu_speed", options.gpu_speed));
//   // "gpu_speed[1]: expected a finite speed > 0, got nan"

#ifndef TANDEM_BASE_SPEEDS_H_
#define TANDEM_BASE_SPEEDS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tandem {

// CheckSpeeds()
//
// OK when every speed is finite and > 0 (an empty list is OK: callers that
// need a count check it themselves). Otherwise kInvalidArgument naming the
// first bad item as "`name`[i]: expected a finite speed > 0, got v".
absl::Status CheckSpeeds(absl::string_view name, absl::Span<const double> speeds);

}  // namespace tandem

#endif  // TANDEM_BASE_SPEEDS_H_
