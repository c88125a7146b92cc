// -----------------------------------------------------------------------------
// File: torch_csv.h
// -----------------------------------------------------------------------------
//
// PyTorch pipelining's schedule CSV: one row per rank in rank order, one cell
// per action, no header. Cells are "{stage}{F|I|B|W}{mb}",
// "({stage}F{mb};{stage}B{mb})OVERLAP_F_B", and in lowered schedules
// "{stage}SEND_F{mb}", "RECV_F", "SEND_B", "RECV_B". An empty cell is an idle
// step; tandem's programs have none, so import drops them (and PyTorch's FSDP
// actions UNSHARD, RESHARD, REDUCE_GRAD, which carry no P2P meaning).
// Stages are global; the placement is inferred (each stage on one rank).

#ifndef TANDEM_SCHEDULE_FORMATS_TORCH_CSV_H_
#define TANDEM_SCHEDULE_FORMATS_TORCH_CSV_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// PyTorch's string form of one action, e.g. "3I1" or "(0F3;3B1)OVERLAP_F_B".
std::string TorchActionString(const Action& a);

// FormatTorchCsv()
//
// The CSV of `s` (with comms iff lowered). kInvalidArgument for two-direction
// schedules (dualpipe), which PyTorch's single stage-to-rank map cannot hold.
absl::StatusOr<std::string> FormatTorchCsv(const Schedule& s);

// ParseTorchCsv()
//
// Parses CSV text into a schedule of `kind` (default custom). Stages and
// micro-batches are counted from the actions; `microbatches` > 0 overrides
// the count. Lowered iff a SEND/RECV appears; waits follow PyTorch's runtime
// (SetTorchWaits). Errors are kInvalidArgument "line L column C: ...".
absl::StatusOr<Schedule> ParseTorchCsv(absl::string_view text, Kind kind = Kind::kCustom, int microbatches = 0);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_FORMATS_TORCH_CSV_H_
