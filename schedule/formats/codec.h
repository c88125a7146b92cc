// -----------------------------------------------------------------------------
// File: codec.h
// -----------------------------------------------------------------------------
//
// Every schedule format by name, for the CLI and the Python package: "trace",
// "torch_csv", "textproto", "json" and "binary" (see trace.h, torch_csv.h and
// proto_io.h for each).
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(std::string csv, Encode(s, "torch_csv"));
//   TANDEM_ASSIGN_OR_RETURN(Schedule t, Decode(csv, "torch_csv"));
#ifndef TANDEM_SCHEDULE_FORMATS_CODEC_H_
#define TANDEM_SCHEDULE_FORMATS_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/formats/trace.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// `s` in `format`; kInvalidArgument for an unknown format or one that
// cannot hold `s` (torch_csv of dualpipe).
absl::StatusOr<std::string> Encode(const Schedule& s, absl::string_view format);

// A schedule from `data` in `format`. `hints` gives a trace's header (unless
// the text has one) and, for torch_csv, the kind and micro-batch count.
absl::StatusOr<Schedule> Decode(absl::string_view data, absl::string_view format, const TraceHeader& hints = {});

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_FORMATS_CODEC_H_
