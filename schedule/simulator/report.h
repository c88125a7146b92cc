// -----------------------------------------------------------------------------
// File: report.h
// -----------------------------------------------------------------------------
//
// What `schedule simulate` and `schedule compare` print, for the CLI and the
// Python package alike: a simulation's summary (text) or every figure
// (JSON: kind, ranks, stages, microbatches, makespan, bubble, bubble_ratio,
// peak_activations, per_rank[], and critical_path[] when asked), and every
// generated kind simulated on the same ranks (stage costs scaled by ranks /
// stages), as a table or JSON.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(std::string json, FormatSimulation(s, r, "json", false));
#ifndef TANDEM_SCHEDULE_SIMULATOR_REPORT_H_
#define TANDEM_SCHEDULE_SIMULATOR_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {

// FormatSimulation()
//
// `r` from Simulate() of `s` (with a timeline if `critical_path`). `format`
// is "summary" or "json"; anything else is kInvalidArgument.
absl::StatusOr<std::string> FormatSimulation(const Schedule& s, const SimResult& r, absl::string_view format,
                                             bool critical_path);

// One kind of a comparison: the figures, or why it cannot run there.
struct KindComparison {
  std::string kind;
  std::string error;  // non-empty: the kind rejects these parameters
  int stages = 0, chunks = 0, peak_activations = 0;
  double bubble = 0, bubble_ratio = 0, makespan = 0, params_per_rank = 0;
};

// CompareKinds()
//
// Every generated kind on `ranks` ranks with `microbatches` micro-batches
// (`chunks` > 0: local stages for the kinds that take a count). `base.cost`
// is per rank-sized stage. kInvalidArgument for ranks or microbatches < 1.
absl::StatusOr<std::vector<KindComparison>> CompareKinds(int ranks, int microbatches, int chunks,
                                                         const SimOptions& base);

// FormatComparison()
//
// `format` "table" or "json" (ranks, microbatches, cost, kinds[]).
absl::StatusOr<std::string> FormatComparison(int ranks, int microbatches, const CostModel& cost,
                                             const std::vector<KindComparison>& rows, absl::string_view format);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_SIMULATOR_REPORT_H_
