#include "schedule/simulator/report.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "base/strict_json.h"
#include "schedule/generators/generate.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/cost_model.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {

absl::StatusOr<std::string> FormatSimulation(const Schedule& s, const SimResult& r, absl::string_view format,
                                             bool critical_path) {
  int peak = 0;
  for (const RankStats& st : r.ranks) peak = std::max(peak, st.peak_activations);
  if (format == "summary") {
    std::string out = absl::StrFormat(
        "%s: %d ranks, %d stages, %d micro-batches\nmakespan %.6g, bubble %.6g (%.2f%% of the makespan, worst "
        "rank), peak activations %d\n%-6s %12s %12s %12s %6s\n",
        KindName(s.kind), s.ranks, s.stages, s.microbatches, r.makespan, r.bubble, 100 * r.bubble_ratio, peak, "rank",
        "busy", "idle", "finish", "peak");
    for (int k = 0; k < s.ranks; ++k) {
      const RankStats& st = r.ranks[k];
      absl::StrAppendFormat(&out, "%-6d %12.6g %12.6g %12.6g %6d\n", k, st.busy, st.idle, st.finish,
                            st.peak_activations);
    }
    if (critical_path) {
      out += "critical path:\n";
      for (const auto& [rank, i] : r.critical_path) {
        absl::StrAppendFormat(&out, "  r%d.%d %s\n", rank, i, DescribeAction(s, s.programs[rank].actions[i]));
      }
    }
    return out;
  }
  if (format != "json") {
    return absl::InvalidArgumentError(absl::StrCat("format: expected summary or json, got '", format, "'"));
  }
  json::Json ranks = json::Json::array();
  for (int k = 0; k < s.ranks; ++k) {
    const RankStats& st = r.ranks[k];
    ranks.push_back({{"rank", k},
                     {"busy", st.busy},
                     {"idle", st.idle},
                     {"finish", st.finish},
                     {"peak_activations", st.peak_activations},
                     {"peak_activation_bytes", st.peak_activation_bytes},
                     {"params_fraction", st.params_fraction}});
  }
  json::Json out = {{"kind", KindName(s.kind)},       {"ranks", s.ranks},         {"stages", s.stages},
                    {"microbatches", s.microbatches}, {"makespan", r.makespan},   {"bubble", r.bubble},
                    {"bubble_ratio", r.bubble_ratio}, {"peak_activations", peak}, {"per_rank", std::move(ranks)}};
  if (critical_path) {
    json::Json path = json::Json::array();
    for (const auto& [rank, i] : r.critical_path) {
      path.push_back(absl::StrFormat("r%d.%d %s", rank, i, DescribeAction(s, s.programs[rank].actions[i])));
    }
    out["critical_path"] = std::move(path);
  }
  TANDEM_ASSIGN_OR_RETURN(std::string text, json::Dump(out));
  return text + "\n";
}

absl::StatusOr<std::vector<KindComparison>> CompareKinds(int ranks, int microbatches, int chunks,
                                                         const SimOptions& base) {
  if (ranks < 1) return absl::InvalidArgumentError(absl::StrFormat("ranks: expected >= 1, got %d", ranks));
  if (microbatches < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("microbatches: expected >= 1, got %d", microbatches));
  }
  std::vector<KindComparison> rows;
  for (Kind kind : GeneratedKinds()) {
    KindComparison row;
    row.kind = std::string(KindName(kind));
    GenerateOptions g{kind, ranks, microbatches, 0};
    if (chunks > 0 && FixedChunks(kind) == 0) g.chunks = chunks;
    absl::StatusOr<Schedule> s = Generate(g);
    absl::StatusOr<SimResult> r;
    if (s.ok()) {
      SimOptions o = base;
      o.cost = base.cost.Scaled(static_cast<double>(ranks) / s->stages);
      o.timeline = false;
      r = Simulate(*s, o);
    }
    if (!s.ok() || !r.ok()) {
      row.error = std::string((s.ok() ? r.status() : s.status()).message());
    } else {
      row.stages = s->stages;
      row.chunks = s->chunks;
      row.bubble = r->bubble;
      row.bubble_ratio = r->bubble_ratio;
      row.makespan = r->makespan;
      for (const RankStats& st : r->ranks) {
        row.peak_activations = std::max(row.peak_activations, st.peak_activations);
        row.params_per_rank = std::max(row.params_per_rank, st.params_fraction);
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::string> FormatComparison(int ranks, int microbatches, const CostModel& cost,
                                             const std::vector<KindComparison>& rows, absl::string_view format) {
  std::string out;
  if (format == "json") {
    json::Json items = json::Json::array();
    for (const KindComparison& r : rows) {
      if (!r.error.empty()) {
        items.push_back({{"kind", r.kind}, {"error", r.error}});
      } else {
        items.push_back({{"kind", r.kind},
                         {"stages", r.stages},
                         {"chunks", r.chunks},
                         {"bubble", r.bubble},
                         {"bubble_ratio", r.bubble_ratio},
                         {"makespan", r.makespan},
                         {"peak_activations", r.peak_activations},
                         {"params_per_rank", r.params_per_rank}});
      }
    }
    TANDEM_ASSIGN_OR_RETURN(out, json::Dump(json::Json{{"ranks", ranks},
                                                       {"microbatches", microbatches},
                                                       {"cost", FormatCost(cost)},
                                                       {"kinds", std::move(items)}}));
    return out + "\n";
  }
  if (format != "table") {
    return absl::InvalidArgumentError(absl::StrCat("format: expected json or table, got '", format, "'"));
  }
  out = absl::StrFormat("# %d ranks, %d micro-batches, cost per rank-sized stage %s\n", ranks, microbatches,
                        FormatCost(cost));
  absl::StrAppend(&out, absl::StrFormat("%-16s %6s %10s %8s %10s %6s %8s\n", "kind", "stages", "bubble", "ratio",
                                        "makespan", "peak", "params"));
  for (const KindComparison& r : rows) {
    if (!r.error.empty()) {
      absl::StrAppend(&out, absl::StrFormat("%-16s %s\n", r.kind, r.error));
    } else {
      absl::StrAppend(&out, absl::StrFormat("%-16s %6d %10.4g %8.4f %10.4g %6d %8.4g\n", r.kind, r.stages, r.bubble,
                                            r.bubble_ratio, r.makespan, r.peak_activations, r.params_per_rank));
    }
  }
  return out;
}

}  // namespace tandem::schedule
