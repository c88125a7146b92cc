// -----------------------------------------------------------------------------
// File: proto_io.h
// -----------------------------------------------------------------------------
//
// Conversion between the in-memory Schedule and schedule.proto, and the
// protobuf encodings: binary, text format and JSON. Decoding treats the input
// as untrusted: wire or syntax errors are reported with a byte offset or line
// and column, and decoded values are range-checked with their field path.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Schedule s, ParseTextProto(text));
//   std::string bytes = ToProto(s).SerializeAsString();

#ifndef TANDEM_SCHEDULE_FORMATS_PROTO_IO_H_
#define TANDEM_SCHEDULE_FORMATS_PROTO_IO_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/ir/schedule.h"
#include "schedule/ir/schedule.pb.h"

namespace tandem::schedule {

proto::Schedule ToProto(const Schedule& s);

// FromProto()
//
// Checks every field (kind, counts, placement, op, stage, micro-batch,
// direction, peer and batch ranges) and returns kInvalidArgument naming its
// path, e.g. "programs[2].actions[7].stage: expected 0..7, got 9".
absl::StatusOr<Schedule> FromProto(const proto::Schedule& p);

std::string FormatBinaryProto(const Schedule& s);
std::string FormatTextProto(const Schedule& s);
std::string FormatJson(const Schedule& s);

absl::StatusOr<Schedule> ParseBinaryProto(absl::string_view bytes);

// LooksBinary()
//
// True when `data` cannot be one of the text formats (trace, CSV, text
// proto, JSON) because it holds a NUL or a control byte other than tab,
// newline, vertical tab, form feed and carriage return: a binary schedule.
// Protobuf encodes small counts and field tags as such bytes, so every
// binary schedule is recognised whatever its file is called.
bool LooksBinary(absl::string_view data);
absl::StatusOr<Schedule> ParseTextProto(absl::string_view text);
absl::StatusOr<Schedule> ParseJson(absl::string_view text);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_FORMATS_PROTO_IO_H_
