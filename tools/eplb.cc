// eplb: expert replica placement from the command line.
//
//   eplb --input=FILE.json [--mode=stable|reference|refined] [--no_duplicates]
//        [--cross_node] [--previous=PLAN.json [--tolerance=0.01]]
//        [--expert_bytes=N] [--repeat=N] [--svg=FILE] [--output=FILE]
//   eplb --input=LOADS.csv --replicas=R --groups=G --nodes=N --gpus=P ...
//
// The JSON input holds the fields of a test-vector case's "inputs" (weight,
// num_replicas, num_groups, num_nodes, num_gpus, optional weight_dtype), or
// a whole case with an "inputs" member; the count flags override its fields.
// A CSV holds one row of loads per layer. Writes JSON to stdout (or
// --output): phy2log, log2phy, logcnt, metrics; with --previous also the
// migration cost; with --repeat=N also solve_ms_median. Bad input: exit
// status 1 and one line on stderr.

#include "balance/eplb.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "balance/eplb_json.h"
#include "balance/metrics.h"
#include "balance/migration.h"
#include "balance/placement.h"
#include "base/status_macros.h"
#include "base/strict_json.h"
#include "tools/cli.h"
#include "tools/eplb_heatmap.h"

ABSL_FLAG(std::string, input, "", "problem: .json (vector-case inputs) or .csv");
ABSL_FLAG(std::string, mode, "stable", "stable, reference or refined");
ABSL_FLAG(bool, no_duplicates, false, "never two replicas of one expert on one GPU");
ABSL_FLAG(bool, cross_node, false, "refined, hierarchical: extra replicas may leave their node");
ABSL_FLAG(std::string, previous, "", "plan in service (JSON with phy2log): rebalance moving few replicas");
ABSL_FLAG(double, tolerance, 0.01, "with --previous: balancedness a layer may give up vs a fresh solve");
ABSL_FLAG(int64_t, expert_bytes, 0, "bytes of one expert, for moved_bytes");
ABSL_FLAG(int, repeat, 0, "solve N times and report solve_ms_median");
ABSL_FLAG(int, replicas, 0, "num_replicas (required for CSV input)");
ABSL_FLAG(int, groups, 0, "num_groups (required for CSV input)");
ABSL_FLAG(int, nodes, 0, "num_nodes (required for CSV input)");
ABSL_FLAG(int, gpus, 0, "num_gpus (required for CSV input)");
ABSL_FLAG(std::string, svg, "", "write a before/after GPU-load heatmap here");
ABSL_FLAG(std::string, gpu_speed, "",
          "relative GPU speeds, one per GPU, comma-separated (e.g. 1,1,0.5,1): balance max load / speed and report "
          "it beside speed-blind EPLB's");
ABSL_FLAG(std::string, output, "", "write the JSON here instead of stdout");

namespace tandem::tools {
namespace {

using balance::Mode;
using balance::Placement;
using balance::PlacementMetrics;
using balance::Problem;

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("--", flag, "=", path, ": cannot open the file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status WriteFile(const std::string& flag, const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) {
    return absl::PermissionDeniedError(absl::StrCat("--", flag, "=", path, ": cannot write the file"));
  }
  return absl::OkStatus();
}

absl::Status WithPrefix(const std::string& prefix, const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", s.message()));
}

absl::StatusOr<json::Json> ReadJson(const std::string& flag, const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFile(flag, path));
  absl::StatusOr<json::Json> doc = json::Parse(text);
  if (!doc.ok()) return WithPrefix(path, doc.status());
  return doc;
}

absl::StatusOr<Problem> ReadProblem() {
  const std::string path = absl::GetFlag(FLAGS_input);
  if (path.empty()) {
    return absl::InvalidArgumentError("--input: expected a .json or .csv file, got none (see --help)");
  }
  Problem problem;
  if (absl::EndsWith(path, ".csv")) {
    TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFile("input", path));
    TANDEM_RETURN_IF_ERROR(WithPrefix(path, balance::LoadsFromCsv(text, &problem)));
  } else {
    TANDEM_ASSIGN_OR_RETURN(json::Json doc, ReadJson("input", path));
    const bool vector_case = doc.is_object() && doc.contains("inputs");
    absl::StatusOr<Problem> p = balance::ProblemFromJson(vector_case ? doc["inputs"] : doc);
    if (!p.ok()) return WithPrefix(path, p.status());
    problem = *std::move(p);
  }
  const bool csv = absl::EndsWith(path, ".csv");
  struct CountFlag {
    const char* name;
    int value;
    int* field;
  };
  for (const CountFlag& f : {CountFlag{"replicas", absl::GetFlag(FLAGS_replicas), &problem.num_replicas},
                             CountFlag{"groups", absl::GetFlag(FLAGS_groups), &problem.num_groups},
                             CountFlag{"nodes", absl::GetFlag(FLAGS_nodes), &problem.num_nodes},
                             CountFlag{"gpus", absl::GetFlag(FLAGS_gpus), &problem.num_gpus}}) {
    if (f.value != 0) {
      *f.field = f.value;
    } else if (csv) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", f.name, ": expected a positive count for CSV input, got none"));
    }
  }
  return problem;
}

absl::StatusOr<Mode> ParseMode(const std::string& mode) {
  if (mode == "stable") return Mode::kStable;
  if (mode == "reference") return Mode::kReference;
  if (mode == "refined") return Mode::kRefined;
  return absl::InvalidArgumentError(absl::StrCat("--mode: expected stable, reference or refined, got '", mode, "'"));
}

// GPU loads with experts placed in id order, one replica each: expert e on
// GPU e * gpus / experts (the "before" picture without a previous plan).
std::vector<double> InOrderLoads(const balance::Weights& w, int gpus) {
  std::vector<double> loads(static_cast<size_t>(w.num_layers()) * gpus, 0.0);
  for (int l = 0; l < w.num_layers(); ++l) {
    for (int e = 0; e < w.num_experts(); ++e) {
      const int g = static_cast<int>(int64_t{e} * gpus / w.num_experts());
      loads[static_cast<size_t>(l) * gpus + g] += w.AsDouble(int64_t{l} * w.num_experts() + e);
    }
  }
  return loads;
}

absl::Status Run() {
  TANDEM_ASSIGN_OR_RETURN(const Problem problem, ReadProblem());
  TANDEM_ASSIGN_OR_RETURN(const Mode mode, ParseMode(absl::GetFlag(FLAGS_mode)));
  const int repeat = absl::GetFlag(FLAGS_repeat);
  if (repeat < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--repeat: expected a count >= 0, got ", repeat));
  }
  if (absl::GetFlag(FLAGS_expert_bytes) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--expert_bytes: expected a size >= 0, got ", absl::GetFlag(FLAGS_expert_bytes)));
  }
  balance::MigrationOptions options;
  options.solve.mode = mode;
  options.solve.no_duplicates = absl::GetFlag(FLAGS_no_duplicates);
  options.solve.cross_node_replicas = absl::GetFlag(FLAGS_cross_node);
  options.tolerance = absl::GetFlag(FLAGS_tolerance);
  options.expert_bytes = absl::GetFlag(FLAGS_expert_bytes);
  const balance::Weights weights = problem.weights();
  const int gpus = problem.num_gpus;
  TANDEM_ASSIGN_OR_RETURN(options.solve.gpu_speed, cli::ParseSpeeds("gpu_speed", absl::GetFlag(FLAGS_gpu_speed), gpus));

  std::vector<int64_t> previous;
  const std::string previous_path = absl::GetFlag(FLAGS_previous);
  if (!previous_path.empty()) {
    TANDEM_ASSIGN_OR_RETURN(json::Json plan, ReadJson("previous", previous_path));
    int replicas = 0;
    absl::StatusOr<std::vector<int64_t>> p2l = balance::Phy2LogFromJson(plan, problem.num_layers, &replicas);
    if (!p2l.ok()) return WithPrefix(previous_path, p2l.status());
    if (replicas != problem.num_replicas) {
      return absl::InvalidArgumentError(absl::StrCat(previous_path, ": phy2log: expected ", problem.num_replicas,
                                                     " slots per layer (num_replicas), got ", replicas));
    }
    previous = *std::move(p2l);
  }

  // One solve: fresh, or migration-aware with --previous.
  balance::MigrationPlan migration;
  Placement placement;
  auto solve = [&]() -> absl::Status {
    if (previous.empty()) {
      TANDEM_ASSIGN_OR_RETURN(placement, balance::RebalanceExperts(weights, problem.num_replicas, problem.num_groups,
                                                                   problem.num_nodes, gpus, options.solve));
    } else {
      TANDEM_ASSIGN_OR_RETURN(
          migration, balance::RebalanceWithMigration(weights, previous, problem.num_replicas, problem.num_groups,
                                                     problem.num_nodes, gpus, options));
      placement = migration.placement;
    }
    return absl::OkStatus();
  };
  std::vector<double> ms;
  for (int i = 0; i < std::max(repeat, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    TANDEM_RETURN_IF_ERROR(solve());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  TANDEM_ASSIGN_OR_RETURN(const PlacementMetrics metrics, balance::ComputeMetrics(weights, placement, gpus));

  json::Json out = balance::PlacementToJson(placement);
  out["policy"] = balance::UsesHierarchicalPolicy(problem.num_groups, problem.num_nodes) ? "hierarchical" : "global";
  out["mode"] = absl::GetFlag(FLAGS_mode);
  out["metrics"] = balance::MetricsToJson(metrics);
  if (!previous.empty()) {
    out["migration"] = {{"moved_replicas", migration.moved_replicas},
                        {"moved_bytes", migration.moved_bytes},
                        {"moved_per_layer", migration.moved_per_layer},
                        {"tolerance", options.tolerance},
                        {"fresh_metrics", balance::MetricsToJson(migration.fresh_metrics)}};
  }
  if (!options.solve.gpu_speed.empty()) {
    // Beside the same solve without speeds, on the same objective.
    balance::RebalanceOptions blind_options = options.solve;
    blind_options.gpu_speed.clear();
    TANDEM_ASSIGN_OR_RETURN(
        Placement blind, balance::RebalanceExperts(weights, problem.num_replicas, problem.num_groups, problem.num_nodes,
                                                   gpus, blind_options));
    TANDEM_ASSIGN_OR_RETURN(std::vector<double> aware_max,
                            balance::MaxLoadPerSpeed(weights, placement, options.solve.gpu_speed));
    TANDEM_ASSIGN_OR_RETURN(std::vector<double> blind_max,
                            balance::MaxLoadPerSpeed(weights, blind, options.solve.gpu_speed));
    double aware_sum = 0, blind_sum = 0;
    for (double v : aware_max) aware_sum += v;
    for (double v : blind_max) blind_sum += v;
    out["gpu_speed"] = {{"speeds", options.solve.gpu_speed},
                        {"max_load_per_speed", aware_max},
                        {"max_load_per_speed_sum", aware_sum},
                        {"speed_blind_max_load_per_speed", blind_max},
                        {"speed_blind_max_load_per_speed_sum", blind_sum}};
  }
  if (repeat > 0) {
    std::sort(ms.begin(), ms.end());
    const size_t n = ms.size();
    out["solve_ms_median"] = n % 2 == 1 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  }

  const std::string svg_path = absl::GetFlag(FLAGS_svg);
  if (!svg_path.empty()) {
    std::vector<HeatmapPanel> panels(2);
    if (previous.empty()) {
      panels[0] = {"before: experts in id order, no replicas", InOrderLoads(weights, gpus)};
    } else {
      TANDEM_ASSIGN_OR_RETURN(Placement before, balance::PlacementFromPhy2Log(problem.num_layers, problem.num_experts,
                                                                              problem.num_replicas, previous));
      TANDEM_ASSIGN_OR_RETURN(panels[0].loads, balance::GpuLoads(weights, before, gpus));
      panels[0].title = "before: previous plan, new loads";
    }
    panels[1].title = absl::StrCat("after: ", absl::GetFlag(FLAGS_mode), previous.empty() ? "" : " with migration");
    TANDEM_ASSIGN_OR_RETURN(panels[1].loads, balance::GpuLoads(weights, placement, gpus));
    TANDEM_RETURN_IF_ERROR(
        WriteFile("svg", svg_path, RenderHeatmapSvg(panels, metrics.lower_bound, problem.num_layers, gpus)));
  }

  TANDEM_ASSIGN_OR_RETURN(std::string text, json::Dump(out));
  text += "\n";
  const std::string output = absl::GetFlag(FLAGS_output);
  if (!output.empty()) return WriteFile("output", output, text);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace tandem::tools

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "expert replica placement (EPLB).\n"
      "  eplb --input=FILE.json [--mode=stable|reference|refined] ...\n"
      "  eplb --input=LOADS.csv --replicas=R --groups=G --nodes=N --gpus=P\n"
      "Exit status: 0 done, 2 bad invocation or input, 1 a failure while running.");
  const std::vector<char*> args = tandem::cli::ParseFlags(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "eplb: unexpected argument '%s' (use --input=FILE)\n",
                 tandem::json::Excerpt(args[1], 40).c_str());
    return tandem::cli::kBadInvocation;
  }
  const absl::Status status = tandem::tools::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "eplb: %s\n", std::string(status.message()).c_str());
    return tandem::cli::ExitCode(status);
  }
  return 0;
}
