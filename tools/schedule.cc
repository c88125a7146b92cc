// schedule: generate, check, simulate, draw and convert pipeline schedules.
//
//   schedule generate --kind=K --ranks=R --microbatches=N [--chunks=V]
//                     [--with_comm] --format=trace|torch_csv|textproto|json|binary [--out=FILE]
//   schedule validate FILE
//   schedule simulate FILE --cost=F=1,B=2,I=1,W=1,FB=3[,p2p_latency=..] [--semantics=..]
//                     [--format=summary|json] [--critical_path]
//   schedule render FILE --format=svg|ascii|chrome [--cost=..] [--out=FILE]
//   schedule convert FILE --format=... [--with_comm] [--out=FILE]
//   schedule compare --ranks=R --microbatches=N --cost=... [--chunks=V] --format=json|table
//
// A binary protobuf is recognised by its content, whatever the file's name;
// other input formats follow the file name: .trace/.txt, .csv, .json,
// .textproto/.txtpb/.pbtxt, .pb/.binpb (or --input_format). A trace needs
// --kind, --ranks and --microbatches unless it starts with "# kind=K ranks=R
// microbatches=N". simulate prints a summary (makespan, bubble, per-rank
// busy and idle) or, with --format=json, every figure. Errors: exit status
// 2 and one line on stderr.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "base/strict_json.h"
#include "schedule/formats/codec.h"
#include "schedule/formats/proto_io.h"
#include "schedule/formats/trace.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/cost_model.h"
#include "schedule/simulator/render.h"
#include "schedule/simulator/report.h"
#include "schedule/simulator/simulator.h"
#include "schedule/validator/validator.h"
#include "tools/cli.h"

ABSL_FLAG(std::string, kind, "",
          "Schedule kind: gpipe, 1f1b, interleaved1f1b, loopedbfs, zb1p, zbv, dualpipe, dualpipev.");
ABSL_FLAG(int, ranks, 0, "Pipeline ranks.");
ABSL_FLAG(int, microbatches, 0, "Micro-batches per step (DualPipe: both directions together).");
ABSL_FLAG(int, chunks, 0, "Local stages per rank for looped kinds (0: the kind's default).");
ABSL_FLAG(bool, with_comm, false, "Lower the schedule (insert sends and receives) before writing it.");
ABSL_FLAG(std::string, format, "", "Output format (see usage).");
ABSL_FLAG(std::string, input_format, "", "Input format; default from the file name.");
ABSL_FLAG(std::string, out, "", "Output file (default: stdout).");
ABSL_FLAG(std::string, cost, "F=1,B=2,I=1,W=1,FB=3", "Cost model, e.g. F=1,B=2,I=1,W=1,FB=3,p2p_latency=0.");
ABSL_FLAG(std::string, semantics, "rendezvous", "Communication semantics: rendezvous or buffered.");
ABSL_FLAG(bool, critical_path, false, "simulate: also list the critical path (compute actions deciding the makespan).");

namespace tandem::schedule {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

absl::Status Write(const std::string& data) {
  const std::string path = absl::GetFlag(FLAGS_out);
  if (path.empty()) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    return absl::OkStatus();
  }
  std::ofstream out(path, std::ios::binary);
  out << data;
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

std::string FormatOf(const std::string& path, absl::string_view data) {
  const std::string given = absl::GetFlag(FLAGS_input_format);
  if (!given.empty()) return given;
  if (LooksBinary(data)) return "binary";
  for (const auto& [suffix, format] : std::vector<std::pair<std::string, std::string>>{{".csv", "torch_csv"},
                                                                                       {".json", "json"},
                                                                                       {".textproto", "textproto"},
                                                                                       {".txtpb", "textproto"},
                                                                                       {".pbtxt", "textproto"},
                                                                                       {".pb", "binary"},
                                                                                       {".binpb", "binary"},
                                                                                       {".trace", "trace"},
                                                                                       {".txt", "trace"}}) {
    if (absl::EndsWith(path, suffix)) return format;
  }
  return "trace";
}

absl::StatusOr<Schedule> Load(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
  const std::string format = FormatOf(path, data);
  if (!absl::c_linear_search(std::vector<std::string>{"trace", "torch_csv", "json", "textproto", "binary"}, format)) {
    return absl::InvalidArgumentError(absl::StrCat("input_format: unknown format '", format, "'"));
  }
  TraceHeader h;  // a trace's header, and the kind and count of a CSV
  if (!absl::GetFlag(FLAGS_kind).empty()) {
    TANDEM_ASSIGN_OR_RETURN(h.kind, ParseKind(absl::GetFlag(FLAGS_kind)));
  }
  h.ranks = absl::GetFlag(FLAGS_ranks);
  h.microbatches = absl::GetFlag(FLAGS_microbatches);
  h.chunks = absl::GetFlag(FLAGS_chunks);
  absl::StatusOr<Schedule> s = Decode(data, format, h);
  if (!s.ok()) return absl::Status(s.status().code(), absl::StrCat(path, ": ", s.status().message()));
  return s;
}

absl::StatusOr<SimOptions> Options() {
  SimOptions o;
  TANDEM_ASSIGN_OR_RETURN(o.cost, ParseCost(absl::GetFlag(FLAGS_cost)));
  const std::string sem = absl::GetFlag(FLAGS_semantics);
  if (sem == "buffered") {
    o.semantics = CommSemantics::kBuffered;
  } else if (sem != "rendezvous") {
    return absl::InvalidArgumentError(absl::StrCat("semantics: expected rendezvous or buffered, got '", sem, "'"));
  }
  return o;
}

absl::Status Generate() {
  GenerateOptions o;
  TANDEM_ASSIGN_OR_RETURN(o.kind, ParseKind(absl::GetFlag(FLAGS_kind)));
  o.ranks = absl::GetFlag(FLAGS_ranks);
  o.microbatches = absl::GetFlag(FLAGS_microbatches);
  o.chunks = absl::GetFlag(FLAGS_chunks);
  TANDEM_ASSIGN_OR_RETURN(Schedule s, schedule::Generate(o));
  if (absl::GetFlag(FLAGS_with_comm)) {
    TANDEM_ASSIGN_OR_RETURN(s, Lower(s));
  }
  const std::string format = absl::GetFlag(FLAGS_format).empty() ? "trace" : absl::GetFlag(FLAGS_format);
  TANDEM_ASSIGN_OR_RETURN(std::string data, Encode(s, format));
  return Write(data);
}

absl::StatusOr<Schedule> LoweredFrom(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(Schedule s, Load(path));
  if (!s.lowered) {
    TANDEM_ASSIGN_OR_RETURN(s, Lower(s));
  }
  return s;
}

absl::Status Simulate(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(Schedule s, LoweredFrom(path));
  TANDEM_ASSIGN_OR_RETURN(SimOptions o, Options());
  o.timeline = absl::GetFlag(FLAGS_critical_path);
  TANDEM_ASSIGN_OR_RETURN(SimResult r, schedule::Simulate(s, o));
  const std::string format = absl::GetFlag(FLAGS_format).empty() ? "summary" : absl::GetFlag(FLAGS_format);
  TANDEM_ASSIGN_OR_RETURN(std::string text, FormatSimulation(s, r, format, absl::GetFlag(FLAGS_critical_path)));
  return Write(text);
}

absl::Status Render(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(Schedule s, LoweredFrom(path));
  TANDEM_ASSIGN_OR_RETURN(SimOptions o, Options());
  TANDEM_ASSIGN_OR_RETURN(SimResult r, schedule::Simulate(s, o));
  const std::string format = absl::GetFlag(FLAGS_format).empty() ? "svg" : absl::GetFlag(FLAGS_format);
  if (format == "svg") return Write(RenderSvg(s, r));
  if (format == "ascii") return Write(RenderAscii(s, r));
  if (format == "chrome") {
    TANDEM_ASSIGN_OR_RETURN(std::string trace, RenderChromeTrace(s, r));
    return Write(trace);
  }
  return absl::InvalidArgumentError(absl::StrCat("format: expected svg, ascii or chrome, got '", format, "'"));
}

absl::Status Convert(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(Schedule s, Load(path));
  if (absl::GetFlag(FLAGS_with_comm) && !s.lowered) {
    TANDEM_ASSIGN_OR_RETURN(s, Lower(s));
  }
  TANDEM_ASSIGN_OR_RETURN(std::string data, Encode(s, absl::GetFlag(FLAGS_format)));
  return Write(data);
}

absl::Status Validate(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(Schedule s, Load(path));
  TANDEM_RETURN_IF_ERROR(schedule::Validate(s));
  return Write(absl::StrFormat("%s: valid %s schedule, %d ranks, %d stages, %d micro-batches, %d actions%s\n", path,
                               KindName(s.kind), s.ranks, s.stages, s.microbatches, s.TotalActions(),
                               s.lowered ? " (lowered, deadlock-free)" : ""));
}

absl::Status Compare() {
  TANDEM_ASSIGN_OR_RETURN(SimOptions base, Options());
  TANDEM_ASSIGN_OR_RETURN(
      std::vector<KindComparison> rows,
      CompareKinds(absl::GetFlag(FLAGS_ranks), absl::GetFlag(FLAGS_microbatches), absl::GetFlag(FLAGS_chunks), base));
  const std::string format = absl::GetFlag(FLAGS_format).empty() ? "table" : absl::GetFlag(FLAGS_format);
  TANDEM_ASSIGN_OR_RETURN(
      std::string out,
      FormatComparison(absl::GetFlag(FLAGS_ranks), absl::GetFlag(FLAGS_microbatches), base.cost, rows, format));
  return Write(out);
}

absl::Status Main(const std::vector<char*>& args) {
  if (args.size() < 2) {
    return absl::InvalidArgumentError("expected a subcommand: generate, validate, simulate, render, convert, compare");
  }
  const std::string cmd = args[1];
  if (cmd == "generate") return Generate();
  if (cmd == "compare") return Compare();
  if (args.size() != 3) return absl::InvalidArgumentError(absl::StrCat(cmd, ": expected one FILE argument"));
  const std::string file = args[2];
  if (cmd == "validate") return Validate(file);
  if (cmd == "simulate") return Simulate(file);
  if (cmd == "render") return Render(file);
  if (cmd == "convert") return Convert(file);
  return absl::InvalidArgumentError(absl::StrCat("unknown subcommand '", cmd, "'"));
}

}  // namespace
}  // namespace tandem::schedule

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "generate, check, simulate, draw and convert pipeline schedules.\n"
      "  schedule generate --kind=K --ranks=R --microbatches=N [--chunks=V] [--with_comm] --format=F\n"
      "  schedule validate|simulate|render|convert FILE\n"
      "  schedule compare --ranks=R --microbatches=N --cost=... --format=json|table\n"
      "Exit status: 0 done, 2 bad invocation or input, 1 a failure while running.");
  const std::vector<char*> args = tandem::cli::ParseFlags(argc, argv);
  const absl::Status s = tandem::schedule::Main(args);
  if (!s.ok()) {
    std::fprintf(stderr, "schedule: %s\n", std::string(s.message()).c_str());
    return tandem::cli::ExitCode(s);
  }
  return 0;
}
