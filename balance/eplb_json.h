// -----------------------------------------------------------------------------
// File: eplb_json.h
// -----------------------------------------------------------------------------
//
// JSON forms of EPLB problems and results, shared by the `eplb` CLI and the
// tests: a problem is the `inputs` object of a test-vector case
// ({"weight": [[...]], "weight_dtype": "int64"|"float32", "num_replicas",
// "num_groups", "num_nodes", "num_gpus"}); a placement is {"phy2log",
// "log2phy", "logcnt"} as nested arrays.

#ifndef TANDEM_BALANCE_EPLB_JSON_H_
#define TANDEM_BALANCE_EPLB_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "balance/metrics.h"
#include "balance/placement.h"
#include "base/strict_json.h"

namespace tandem::balance {

// An owning problem: loads plus the cluster shape.
struct Problem {
  int num_layers = 0;
  int num_experts = 0;
  Weights::Type type = Weights::Type::kInt64;
  std::vector<int64_t> int64_loads;  // when type is kInt64
  std::vector<float> float32_loads;  // when type is kFloat32
  int num_replicas = 0;
  int num_groups = 0;
  int num_nodes = 0;
  int num_gpus = 0;

  // A view of the loads; valid while this Problem lives and is not changed.
  Weights weights() const;
};

// IntMatrixFromJson()
//
// Reads a rectangular array of arrays of integers into a flat row-major
// vector, setting `rows` and `cols`. kInvalidArgument naming the first bad
// element as `<where>[i][j]: expected ..., got ...`.
absl::StatusOr<std::vector<int64_t>> IntMatrixFromJson(const json::Json& v, absl::string_view where, int* rows,
                                                       int* cols);

// ProblemFromJson()
//
// Reads a problem object (see the top of this file). Without weight_dtype,
// the loads are int64 if every one is an integer literal, else float32.
// Counts are read but not checked against each other (RebalanceExperts does
// that). kInvalidArgument naming the missing or malformed field.
absl::StatusOr<Problem> ProblemFromJson(const json::Json& v);

// LoadsFromCsv()
//
// Reads a CSV of loads, one row per layer, comma-separated, all rows of
// equal length; blank lines and lines starting with '#' are skipped. Loads
// are int64 if every field is an integer, else float32. Sets the loads and
// shape of `problem` and leaves its counts alone. Errors name "line L".
absl::Status LoadsFromCsv(absl::string_view text, Problem* problem);

// Phy2LogFromJson()
//
// Reads the "phy2log" member of a plan object (as PlacementToJson writes it)
// into a flat vector, checking that it has `num_layers` rows of equal length
// and setting `num_replicas`.
absl::StatusOr<std::vector<int64_t>> Phy2LogFromJson(const json::Json& plan, int num_layers, int* num_replicas);

// PlacementToJson()
//
// {"phy2log": [[..]], "log2phy": [[[..]]], "logcnt": [[..]]}.
json::Json PlacementToJson(const Placement& p);

// MetricsToJson()
//
// {"balancedness_per_layer", "balancedness_aggregate",
//  "max_gpu_load_per_layer", "lower_bound_per_layer",
//  "imbalance_ratio_aggregate", "gpus_holding_duplicate_replicas"}.
json::Json MetricsToJson(const PlacementMetrics& m);

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_EPLB_JSON_H_
