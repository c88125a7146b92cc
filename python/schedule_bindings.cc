// tandem._tandem's schedule half: the Schedule type and generate, validate,
// simulate, render, compare and the formats (PyTorch's CSV and action
// strings, the protobuf encodings, tandem's trace).
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "comm/emulated/link.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "python/bindings.h"
#include "schedule/formats/codec.h"
#include "schedule/formats/proto_io.h"
#include "schedule/formats/torch_csv.h"
#include "schedule/formats/trace.h"
#include "schedule/generators/generate.h"
#include "schedule/ir/schedule.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/cost_model.h"
#include "schedule/simulator/phase_program.h"
#include "schedule/simulator/render.h"
#include "schedule/simulator/report.h"
#include "schedule/simulator/simulator.h"
#include "schedule/validator/validator.h"

namespace tandem::python {
namespace {

namespace py = pybind11;
using schedule::Schedule;

// A phase step as the package passes it: (kind, us, bytes, exchange, label)
// with kind compute, post, post_timed, wait or yield.
using Step = std::tuple<std::string, double, int64_t, int, std::string>;
// Per op ("f", "b", "i", "w"): one program per stage, or one for all.
using PhaseSpec = std::map<std::string, std::vector<std::vector<Step>>>;

absl::StatusOr<schedule::PhaseStep> StepOf(const Step& step, const std::string& where) {
  const auto& [kind, us, bytes, exchange, label] = step;
  if (kind == "compute") return schedule::PhaseStep::Compute(us, label);
  if (kind == "post") return schedule::PhaseStep::Post(exchange, bytes, label);
  if (kind == "post_timed") return schedule::PhaseStep::PostTimed(exchange, us, label);
  if (kind == "wait") return schedule::PhaseStep::Wait(exchange);
  if (kind == "yield") return schedule::PhaseStep::Yield();
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": expected compute, post, post_timed, wait or yield, got '", kind, "'"));
}

absl::StatusOr<schedule::SimOptions> OptionsOf(const std::string& cost, const std::string& semantics,
                                               const std::optional<PhaseSpec>& phases, int ep,
                                               const std::string& ep_link) {
  schedule::SimOptions o;
  absl::StatusOr<schedule::CostModel> c = schedule::ParseCost(cost);
  if (!c.ok()) return c.status();
  o.cost = *std::move(c);
  if (semantics == "buffered") {
    o.semantics = schedule::CommSemantics::kBuffered;
  } else if (semantics != "rendezvous") {
    return absl::InvalidArgumentError(
        absl::StrCat("semantics: expected rendezvous or buffered, got '", semantics, "'"));
  }
  if (!phases.has_value()) return o;
  auto p = std::make_shared<schedule::PhaseCosts>();
  p->ep = ep;
  if (ep < 1) return absl::InvalidArgumentError(absl::StrCat("ep: expected >= 1, got ", ep));
  if (!ep_link.empty()) {  // else unlimited
    absl::StatusOr<comm::Link> link = comm::ParseLink("ep_link", ep_link);
    if (!link.ok()) return link.status();
    p->ep_link = *link;
  }
  for (const auto& [op, programs] : *phases) {
    std::vector<schedule::PhaseProgram>* to = op == "f"   ? &p->f
                                              : op == "b" ? &p->b
                                              : op == "i" ? &p->i
                                              : op == "w" ? &p->w
                                                          : nullptr;
    if (to == nullptr) return absl::InvalidArgumentError(absl::StrCat("phases: unknown pass '", op, "'"));
    for (size_t k = 0; k < programs.size(); ++k) {
      schedule::PhaseProgram program;
      for (size_t j = 0; j < programs[k].size(); ++j) {
        absl::StatusOr<schedule::PhaseStep> s =
            StepOf(programs[k][j], absl::StrCat("phases['", op, "'][", k, "][", j, "]"));
        if (!s.ok()) return s.status();
        program.push_back(*std::move(s));
      }
      to->push_back(std::move(program));
    }
  }
  o.cost.phases = std::move(p);
  return o;
}

absl::StatusOr<Schedule> Lowered(const Schedule& s) {
  if (s.lowered) return s;
  return schedule::Lower(s);
}

// The lowered schedule and its simulation (what reports and pictures need).
struct Simulated {
  Schedule schedule;
  schedule::SimResult result;
};

absl::StatusOr<Simulated> LowerAndSimulate(const Schedule& s, const schedule::SimOptions& o) {
  absl::StatusOr<Schedule> lowered = Lowered(s);
  if (!lowered.ok()) return lowered.status();
  absl::StatusOr<schedule::SimResult> r = schedule::Simulate(*lowered, o);
  if (!r.ok()) return r.status();
  return Simulated{*std::move(lowered), *std::move(r)};
}

absl::StatusOr<Schedule> Parse(const std::string& data, const std::string& format, const std::string& kind,
                               int microbatches, int ranks, int chunks) {
  schedule::TraceHeader h;  // a trace's header, and the kind and count of a CSV
  if (!kind.empty()) {
    absl::StatusOr<schedule::Kind> parsed = schedule::ParseKind(kind);
    if (!parsed.ok()) return parsed.status();
    h.kind = *parsed;
  }
  h.ranks = ranks;
  h.microbatches = microbatches;
  h.chunks = chunks;
  return schedule::Decode(data, format, h);
}

std::vector<std::string> Actions(const Schedule& s, int rank) {
  if (rank < 0 || rank >= s.ranks) {
    Raise(absl::InvalidArgumentError(absl::StrCat("rank: expected 0..", s.ranks - 1, ", got ", rank)));
  }
  std::vector<std::string> out;
  for (const schedule::Action& a : s.programs[rank].actions) out.push_back(schedule::TorchActionString(a));
  return out;
}

Schedule Generate(const std::string& kind, int ranks, int microbatches, int chunks, bool with_comm) {
  const schedule::Kind k = ValueOrRaise(schedule::ParseKind(kind));
  return WithoutGil([&]() -> absl::StatusOr<Schedule> {
    absl::StatusOr<Schedule> s = schedule::Generate({k, ranks, microbatches, chunks});
    if (!s.ok() || !with_comm) return s;
    return schedule::Lower(*s);
  });
}

// Generation plus the CSV, `iters` times in C++: seconds per call.
std::vector<double> TimeGenerateCsv(const std::string& kind, int ranks, int microbatches, int iters) {
  const schedule::Kind k = ValueOrRaise(schedule::ParseKind(kind));
  return WithoutGil([&]() -> absl::StatusOr<std::vector<double>> {
    std::vector<double> seconds;
    for (int i = 0; i < iters; ++i) {
      const absl::Time start = absl::Now();
      absl::StatusOr<Schedule> s = schedule::Generate({k, ranks, microbatches, 0});
      if (!s.ok()) return s.status();
      absl::StatusOr<std::string> csv = schedule::FormatTorchCsv(*s);
      if (!csv.ok()) return csv.status();
      seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    }
    return seconds;
  });
}

}  // namespace

void AddSchedule(py::module_& m) {
  using py::arg;
  py::class_<Schedule>(m, "Schedule")
      .def_property_readonly("kind", [](const Schedule& s) { return std::string(schedule::KindName(s.kind)); })
      .def_readonly("ranks", &Schedule::ranks)
      .def_readonly("stages", &Schedule::stages)
      .def_readonly("microbatches", &Schedule::microbatches)
      .def_readonly("directions", &Schedule::directions)
      .def_readonly("chunks", &Schedule::chunks)
      .def_readonly("lowered", &Schedule::lowered)
      .def_property_readonly("total_actions", &Schedule::TotalActions)
      .def("actions", &Actions, arg("rank"))
      .def("encode", [](const Schedule& s,
                        const std::string& format) { return WithoutGil([&] { return schedule::Encode(s, format); }); })
      .def("to_binary",
           [](const Schedule& s) {
             std::string bytes;
             {
               py::gil_scoped_release release;
               bytes = schedule::FormatBinaryProto(s);
             }
             return py::bytes(bytes);
           })
      .def("lower", [](const Schedule& s) { return WithoutGil([&] { return Lowered(s); }); });
  m.def("generate", &Generate, arg("kind"), arg("ranks"), arg("microbatches"), arg("chunks"), arg("with_comm"));
  m.def("time_generate_csv", &TimeGenerateCsv, arg("kind"), arg("ranks"), arg("microbatches"), arg("iters"));
  m.def(
      "parse",
      [](const py::bytes& data, const std::string& format, const std::string& kind, int microbatches, int ranks,
         int chunks) {
        const std::string text = data;
        return WithoutGil([&] { return Parse(text, format, kind, microbatches, ranks, chunks); });
      },
      arg("data"), arg("format"), arg("kind"), arg("microbatches"), arg("ranks"), arg("chunks"));
  m.def("validate", [](const Schedule& s) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = schedule::Validate(s);
    }
    RaiseIfError(status);
  });
  m.def(
      "simulate",
      [](const Schedule& s, const std::string& cost, const std::string& semantics,
         const std::optional<PhaseSpec>& phases, int ep, const std::string& ep_link, bool critical_path) {
        schedule::SimOptions o = ValueOrRaise(OptionsOf(cost, semantics, phases, ep, ep_link));
        o.timeline = critical_path;
        return WithoutGil([&]() -> absl::StatusOr<std::string> {
          absl::StatusOr<Simulated> r = LowerAndSimulate(s, o);
          if (!r.ok()) return r.status();
          return schedule::FormatSimulation(r->schedule, r->result, "json", critical_path);
        });
      },
      arg("schedule"), arg("cost"), arg("semantics"), arg("phases"), arg("ep"), arg("ep_link"), arg("critical_path"));
  m.def(
      "render",
      [](const Schedule& s, const std::string& format, const std::string& cost, const std::string& semantics,
         const std::optional<PhaseSpec>& phases, int ep, const std::string& ep_link) {
        const schedule::SimOptions o = ValueOrRaise(OptionsOf(cost, semantics, phases, ep, ep_link));
        return WithoutGil([&]() -> absl::StatusOr<std::string> {
          absl::StatusOr<Simulated> r = LowerAndSimulate(s, o);
          if (!r.ok()) return r.status();
          if (format == "svg") return schedule::RenderSvg(r->schedule, r->result);
          if (format == "ascii") return schedule::RenderAscii(r->schedule, r->result);
          if (format == "chrome") return schedule::RenderChromeTrace(r->schedule, r->result);
          return absl::InvalidArgumentError(absl::StrCat("fmt: expected svg, ascii or chrome, got '", format, "'"));
        });
      },
      arg("schedule"), arg("fmt"), arg("cost"), arg("semantics"), arg("phases"), arg("ep"), arg("ep_link"));
  m.def(
      "compare",
      [](int ranks, int microbatches, const std::string& cost, int chunks, const std::string& semantics) {
        const schedule::SimOptions o = ValueOrRaise(OptionsOf(cost, semantics, std::nullopt, 1, ""));
        return WithoutGil([&]() -> absl::StatusOr<std::string> {
          absl::StatusOr<std::vector<schedule::KindComparison>> rows =
              schedule::CompareKinds(ranks, microbatches, chunks, o);
          if (!rows.ok()) return rows.status();
          return schedule::FormatComparison(ranks, microbatches, o.cost, *rows, "json");
        });
      },
      arg("ranks"), arg("microbatches"), arg("cost"), arg("chunks"), arg("semantics"));
  py::list kinds;
  for (schedule::Kind k : schedule::GeneratedKinds()) kinds.append(std::string(schedule::KindName(k)));
  m.attr("KINDS") = kinds;
}

}  // namespace tandem::python
