#include "balance/eplb_json.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace tandem::balance {
namespace {

absl::Status Bad(absl::string_view where, absl::string_view expected, const json::Json& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": expected ", expected, ", got ", json::Excerpt(got.dump(), 40)));
}

// An integer literal that fits int64.
bool IsInt64(const json::Json& v) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()});
}

absl::StatusOr<int> IntField(const json::Json& v, const char* name) {
  if (!v.contains(name)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a field in the input, got none"));
  }
  const json::Json& f = v[name];
  if (!IsInt64(f) || f.get<int64_t>() < std::numeric_limits<int>::min() ||
      f.get<int64_t>() > std::numeric_limits<int>::max()) {
    return Bad(name, "an integer", f);
  }
  return static_cast<int>(f.get<int64_t>());
}

// Checks that `v` is a non-empty array of equal-length arrays.
absl::Status CheckMatrix(const json::Json& v, absl::string_view where, int* rows, int* cols) {
  if (!v.is_array() || v.empty()) {
    return Bad(where, "a non-empty array of rows", v);
  }
  const size_t width = v[0].is_array() ? v[0].size() : 0;
  for (size_t r = 0; r < v.size(); ++r) {
    if (!v[r].is_array() || v[r].size() != width) {
      return Bad(absl::StrCat(where, "[", r, "]"), absl::StrCat("a row of ", width, " values"), v[r]);
    }
  }
  *rows = static_cast<int>(v.size());
  *cols = static_cast<int>(width);
  return absl::OkStatus();
}

}  // namespace

Weights Problem::weights() const {
  return type == Weights::Type::kInt64 ? Weights::Int64(int64_loads, num_layers, num_experts)
                                       : Weights::Float32(float32_loads, num_layers, num_experts);
}

absl::StatusOr<std::vector<int64_t>> IntMatrixFromJson(const json::Json& v, absl::string_view where, int* rows,
                                                       int* cols) {
  TANDEM_RETURN_IF_ERROR(CheckMatrix(v, where, rows, cols));
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(*rows) * *cols);
  for (int r = 0; r < *rows; ++r) {
    const json::Json& row = v[r];
    for (int c = 0; c < *cols; ++c) {
      if (!IsInt64(row[c])) {
        return Bad(absl::StrCat(where, "[", r, "][", c, "]"), "an integer", row[c]);
      }
      out.push_back(row[c].get<int64_t>());
    }
  }
  return out;
}

absl::StatusOr<Problem> ProblemFromJson(const json::Json& v) {
  if (!v.is_object()) return Bad("input", "an object", v);
  Problem p;
  if (!v.contains("weight")) {
    return absl::InvalidArgumentError("weight: expected a field in the input, got none");
  }
  const json::Json* weight = &v["weight"];
  TANDEM_RETURN_IF_ERROR(CheckMatrix(*weight, "weight", &p.num_layers, &p.num_experts));
  bool all_integers = true;
  for (const json::Json& row : *weight) {
    for (const json::Json& x : row) all_integers = all_integers && IsInt64(x);
  }
  if (v.contains("weight_dtype")) {
    const json::Json& dtype = v["weight_dtype"];
    if (dtype == "int64") {
      p.type = Weights::Type::kInt64;
    } else if (dtype == "float32") {
      p.type = Weights::Type::kFloat32;
    } else {
      return Bad("weight_dtype", "\"int64\" or \"float32\"", dtype);
    }
  } else {
    p.type = all_integers ? Weights::Type::kInt64 : Weights::Type::kFloat32;
  }
  if (p.type == Weights::Type::kInt64) {
    int rows, cols;
    TANDEM_ASSIGN_OR_RETURN(p.int64_loads, IntMatrixFromJson(*weight, "weight", &rows, &cols));
  } else {
    for (int r = 0; r < p.num_layers; ++r) {
      const json::Json& row = (*weight)[r];
      for (int c = 0; c < p.num_experts; ++c) {
        if (!row[c].is_number()) {
          return Bad(absl::StrCat("weight[", r, "][", c, "]"), "a number", row[c]);
        }
        p.float32_loads.push_back(static_cast<float>(row[c].get<double>()));
      }
    }
  }
  TANDEM_ASSIGN_OR_RETURN(p.num_replicas, IntField(v, "num_replicas"));
  TANDEM_ASSIGN_OR_RETURN(p.num_groups, IntField(v, "num_groups"));
  TANDEM_ASSIGN_OR_RETURN(p.num_nodes, IntField(v, "num_nodes"));
  TANDEM_ASSIGN_OR_RETURN(p.num_gpus, IntField(v, "num_gpus"));
  return p;
}

absl::Status LoadsFromCsv(absl::string_view text, Problem* problem) {
  std::vector<std::vector<std::string>> rows;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    for (absl::string_view f : absl::StrSplit(line, ',')) {
      fields.emplace_back(absl::StripAsciiWhitespace(f));
    }
    if (!rows.empty() && fields.size() != rows[0].size()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": expected ", rows[0].size(),
                                                     " loads as in the first row, got ", fields.size()));
    }
    for (const std::string& f : fields) {
      double d;
      if (!absl::SimpleAtod(f, &d)) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_number, ": expected a number, got '", json::Excerpt(f, 40), "'"));
      }
    }
    rows.push_back(std::move(fields));
  }
  if (rows.empty()) {
    return absl::InvalidArgumentError("csv: expected at least one row of loads, got none");
  }
  bool all_integers = true;
  for (const auto& row : rows) {
    for (const std::string& f : row) {
      int64_t i;
      all_integers = all_integers && absl::SimpleAtoi(f, &i);
    }
  }
  problem->num_layers = static_cast<int>(rows.size());
  problem->num_experts = static_cast<int>(rows[0].size());
  problem->type = all_integers ? Weights::Type::kInt64 : Weights::Type::kFloat32;
  problem->int64_loads.clear();
  problem->float32_loads.clear();
  for (const auto& row : rows) {
    for (const std::string& f : row) {
      if (all_integers) {
        int64_t i = 0;
        (void)absl::SimpleAtoi(f, &i);
        problem->int64_loads.push_back(i);
      } else {
        double d = 0;
        (void)absl::SimpleAtod(f, &d);
        problem->float32_loads.push_back(static_cast<float>(d));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> Phy2LogFromJson(const json::Json& plan, int num_layers, int* num_replicas) {
  if (!plan.is_object() || !plan.contains("phy2log")) {
    return absl::InvalidArgumentError("phy2log: expected a field in the previous plan, got none");
  }
  int rows = 0;
  TANDEM_ASSIGN_OR_RETURN(std::vector<int64_t> flat,
                          IntMatrixFromJson(plan["phy2log"], "phy2log", &rows, num_replicas));
  if (rows != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("phy2log: expected ", num_layers, " layers as in the loads, got ", rows));
  }
  return flat;
}

json::Json PlacementToJson(const Placement& p) {
  json::Json phy2log = json::Json::array(), log2phy = json::Json::array(), logcnt = json::Json::array();
  for (int l = 0; l < p.num_layers; ++l) {
    json::Json slots = json::Json::array(), experts = json::Json::array(), counts = json::Json::array();
    for (int s = 0; s < p.num_replicas; ++s) slots.push_back(p.expert_of(l, s));
    for (int e = 0; e < p.num_experts; ++e) {
      const int64_t base = (int64_t{l} * p.num_experts + e) * p.max_count;
      experts.push_back(std::vector<int64_t>(p.log2phy.begin() + base, p.log2phy.begin() + base + p.max_count));
      counts.push_back(p.count_of(l, e));
    }
    phy2log.push_back(std::move(slots));
    log2phy.push_back(std::move(experts));
    logcnt.push_back(std::move(counts));
  }
  return json::Json{{"phy2log", std::move(phy2log)}, {"log2phy", std::move(log2phy)}, {"logcnt", std::move(logcnt)}};
}

json::Json MetricsToJson(const PlacementMetrics& m) {
  return json::Json{{"balancedness_per_layer", m.balancedness},
                    {"balancedness_aggregate", m.balancedness_aggregate},
                    {"max_gpu_load_per_layer", m.max_gpu_load},
                    {"lower_bound_per_layer", m.lower_bound},
                    {"imbalance_ratio_aggregate", m.imbalance_ratio_aggregate},
                    {"gpus_holding_duplicate_replicas", m.gpus_holding_duplicate_replicas}};
}

}  // namespace tandem::balance
