#include "schedule/formats/codec.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "schedule/formats/proto_io.h"
#include "schedule/formats/torch_csv.h"
#include "schedule/formats/trace.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {
namespace {

absl::Status UnknownFormat(absl::string_view format) {
  return absl::InvalidArgumentError(
      absl::StrCat("format: expected trace, torch_csv, textproto, json or binary, got '", format, "'"));
}

}  // namespace

absl::StatusOr<std::string> Encode(const Schedule& s, absl::string_view format) {
  if (format == "trace") return FormatTrace(s);
  if (format == "torch_csv") return FormatTorchCsv(s);
  if (format == "textproto") return FormatTextProto(s);
  if (format == "json") return FormatJson(s);
  if (format == "binary") return FormatBinaryProto(s);
  return UnknownFormat(format);
}

absl::StatusOr<Schedule> Decode(absl::string_view data, absl::string_view format, const TraceHeader& hints) {
  if (format == "trace") return ParseTrace(data, hints);
  if (format == "torch_csv") return ParseTorchCsv(data, hints.kind, hints.microbatches);
  if (format == "textproto") return ParseTextProto(data);
  if (format == "json") return ParseJson(data);
  if (format == "binary") return ParseBinaryProto(data);
  return UnknownFormat(format);
}

}  // namespace tandem::schedule
