// -----------------------------------------------------------------------------
// File: trace.h
// -----------------------------------------------------------------------------
//
// The compact per-rank trace text of DeepSeek's DualPipe parity data: one
// line "r<k>: tok tok ..." per rank. Compute tokens name the rank's local
// chunk c and the per-direction micro-batch m: F<c>.<m>, B<c>.<m>, I<c>.<m>,
// W<c>.<m>, FB<c0>.<m0>+<c1>.<m1>. A lowered program adds batches
// "[SF<c>.<m>@<peer>,RB<c>.<m>@<peer>,...]" in posting order, each posted right
// before the next compute op and waited on in full before it runs.
//
// Example:
//   r0: F0.0 [SF0.0@1,RF1.0@1] F1.0 ...

#ifndef TANDEM_SCHEDULE_FORMATS_TRACE_H_
#define TANDEM_SCHEDULE_FORMATS_TRACE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// FormatTrace()
//
// The trace text of `s`, one line per rank, each ending in '\n'. Comm ops
// are printed iff `s.lowered`.
std::string FormatTrace(const Schedule& s);

struct TraceHeader {
  Kind kind = Kind::kCustom;
  int ranks = 0;
  int microbatches = 0;
  int chunks = 0;  // 0: inferred (largest chunk id + 1, or the kind's count)
};

// ParseTrace()
//
// Parses trace text. `header` gives kind, ranks and micro-batches unless the
// text starts with a line "# kind=K ranks=R microbatches=N [chunks=V]", which
// takes precedence. Placement follows the kind (dualpipe, v for dualpipev and
// zbv, looped otherwise). The result is lowered iff any batch appears. Errors
// are kInvalidArgument "line L column C: ...".
absl::StatusOr<Schedule> ParseTrace(absl::string_view text, const TraceHeader& header = {});

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_FORMATS_TRACE_H_
