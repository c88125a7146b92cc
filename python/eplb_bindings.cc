// tandem._tandem's EPLB half: solves, metrics and the load recorder over
// NumPy arrays (the Python package turns lists and torch tensors into them).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "balance/eplb.h"
#include "balance/load_recorder.h"
#include "balance/metrics.h"
#include "balance/migration.h"
#include "balance/placement.h"
#include "pybind11/numpy.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "python/bindings.h"

namespace tandem::python {
namespace {

namespace py = pybind11;
using balance::LoadRecorder;
using balance::Placement;
using balance::Weights;

std::string ShapeOf(const py::array& a) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

bool IsContiguous(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }

// A C-contiguous `ndim`-D array of T (any shape when ndim is 0), viewed in
// place.
template <typename T>
absl::StatusOr<absl::Span<const T>> View(const py::array& a, const char* name, int ndim, const char* expected) {
  if (ndim > 0 && a.ndim() != ndim) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a ", ndim, "-D ", expected, " array, got shape ", ShapeOf(a)));
  }
  if (!py::isinstance<py::array_t<T>>(a)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected ", expected, ", got dtype ", std::string(py::str(a.dtype()))));
  }
  if (!IsContiguous(a)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a C-contiguous array (read in place, not copied)"));
  }
  return absl::MakeConstSpan(static_cast<const T*>(a.data()), static_cast<size_t>(a.size()));
}

// The weights of a 2-D int64 or float32 array (the package converts other
// dtypes as the reference's weight.float() would).
absl::StatusOr<Weights> WeightsOf(const py::array& a) {
  if (a.ndim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: expected a 2-D [layers, experts] array, got shape ", ShapeOf(a)));
  }
  const int layers = static_cast<int>(a.shape(0)), experts = static_cast<int>(a.shape(1));
  if (py::isinstance<py::array_t<float>>(a)) {
    absl::StatusOr<absl::Span<const float>> v = View<float>(a, "weight", 2, "float32");
    if (!v.ok()) return v.status();
    return Weights::Float32(*v, layers, experts);
  }
  absl::StatusOr<absl::Span<const int64_t>> v = View<int64_t>(a, "weight", 2, "int64 or float32");
  if (!v.ok()) return v.status();
  return Weights::Int64(*v, layers, experts);
}

// Moves `v` into a NumPy array of `shape` (no copy).
template <typename T>
py::array_t<T> ToArray(std::vector<T> v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule free(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), free);
}

absl::StatusOr<balance::Mode> ParseMode(const std::string& mode) {
  if (mode == "reference") return balance::Mode::kReference;
  if (mode == "stable") return balance::Mode::kStable;
  if (mode == "refined") return balance::Mode::kRefined;
  return absl::InvalidArgumentError(absl::StrCat("mode: expected reference, stable or refined, got '", mode, "'"));
}

struct SolveArgs {
  int num_replicas, num_groups, num_nodes, num_gpus;
  balance::RebalanceOptions options;
};

SolveArgs MakeArgs(int num_replicas, int num_groups, int num_nodes, int num_gpus, const std::string& mode,
                   bool no_duplicates, bool cross_node_replicas, std::vector<double> gpu_speed) {
  SolveArgs a{num_replicas, num_groups, num_nodes, num_gpus, {}};
  a.options.mode = ValueOrRaise(ParseMode(mode));
  a.options.no_duplicates = no_duplicates;
  a.options.cross_node_replicas = cross_node_replicas;
  a.options.gpu_speed = std::move(gpu_speed);
  return a;
}

py::dict PlacementDict(Placement p) {
  py::dict out;
  const py::ssize_t layers = p.num_layers, experts = p.num_experts;
  out["phy2log"] = ToArray(std::move(p.phy2log), {layers, p.num_replicas});
  out["log2phy"] = ToArray(std::move(p.log2phy), {layers, experts, p.max_count});
  out["logcnt"] = ToArray(std::move(p.logcnt), {layers, experts});
  return out;
}

// rebalance(): the placement arrays; with `previous` (a [layers, replicas]
// phy2log in service) the migration-aware solve, plus the moves.
py::dict Rebalance(const py::array& weight, int num_replicas, int num_groups, int num_nodes, int num_gpus,
                   const std::string& mode, bool no_duplicates, bool cross_node_replicas, std::vector<double> gpu_speed,
                   std::optional<py::array> previous, int64_t expert_bytes, double tolerance) {
  const Weights w = ValueOrRaise(WeightsOf(weight));
  SolveArgs a = MakeArgs(num_replicas, num_groups, num_nodes, num_gpus, mode, no_duplicates, cross_node_replicas,
                         std::move(gpu_speed));
  if (!previous.has_value()) {
    return PlacementDict(WithoutGil([&] {
      return balance::RebalanceExperts(w, a.num_replicas, a.num_groups, a.num_nodes, a.num_gpus, a.options);
    }));
  }
  const absl::Span<const int64_t> prev =
      ValueOrRaise(View<int64_t>(*previous, "previous_phy2log", 2, "int64 [layers, replicas]"));
  if (previous->shape(0) != w.num_layers() || previous->shape(1) != num_replicas) {
    Raise(absl::InvalidArgumentError(absl::StrCat("previous_phy2log: expected shape (", w.num_layers(), ", ",
                                                  num_replicas, "), got ", ShapeOf(*previous))));
  }
  balance::MigrationOptions m;
  m.solve = a.options;
  m.tolerance = tolerance;
  m.expert_bytes = expert_bytes;
  balance::MigrationPlan plan = WithoutGil([&] {
    return balance::RebalanceWithMigration(w, prev, a.num_replicas, a.num_groups, a.num_nodes, a.num_gpus, m);
  });
  const py::ssize_t layers = plan.placement.num_layers;
  py::dict out = PlacementDict(std::move(plan.placement));
  out["moved_per_layer"] = ToArray(std::move(plan.moved_per_layer), {layers});
  out["moved_replicas"] = plan.moved_replicas;
  out["moved_bytes"] = plan.moved_bytes;
  return out;
}

// The C++ solve alone, `iters` times: seconds per call (for the Python
// package's overhead benchmark).
std::vector<double> TimeRebalance(const py::array& weight, int num_replicas, int num_groups, int num_nodes,
                                  int num_gpus, const std::string& mode, int iters) {
  const Weights w = ValueOrRaise(WeightsOf(weight));
  SolveArgs a = MakeArgs(num_replicas, num_groups, num_nodes, num_gpus, mode, false, false, {});
  return WithoutGil([&]() -> absl::StatusOr<std::vector<double>> {
    std::vector<double> seconds;
    for (int i = 0; i < iters; ++i) {
      const absl::Time start = absl::Now();
      absl::StatusOr<Placement> p =
          balance::RebalanceExperts(w, a.num_replicas, a.num_groups, a.num_nodes, a.num_gpus, a.options);
      if (!p.ok()) return p.status();
      seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    }
    return seconds;
  });
}

py::dict Metrics(const py::array& weight, const py::array& phy2log, int num_gpus, std::vector<double> gpu_speed) {
  const Weights w = ValueOrRaise(WeightsOf(weight));
  const absl::Span<const int64_t> slots =
      ValueOrRaise(View<int64_t>(phy2log, "phy2log", 2, "int64 [layers, replicas]"));
  if (phy2log.shape(0) != w.num_layers()) {
    Raise(absl::InvalidArgumentError(
        absl::StrCat("phy2log: expected ", w.num_layers(), " layers (as weight), got ", phy2log.shape(0))));
  }
  const Placement p = ValueOrRaise(
      balance::PlacementFromPhy2Log(w.num_layers(), w.num_experts(), static_cast<int>(phy2log.shape(1)), slots));
  balance::PlacementMetrics m = ValueOrRaise(balance::ComputeMetrics(w, p, num_gpus));
  const py::ssize_t layers = w.num_layers();
  py::dict out;
  out["balancedness"] = ToArray(std::move(m.balancedness), {layers});
  out["balancedness_aggregate"] = m.balancedness_aggregate;
  out["max_gpu_load"] = ToArray(std::move(m.max_gpu_load), {layers});
  out["lower_bound"] = ToArray(std::move(m.lower_bound), {layers});
  out["imbalance_ratio"] = ToArray(std::move(m.imbalance_ratio), {layers});
  out["imbalance_ratio_aggregate"] = m.imbalance_ratio_aggregate;
  out["gpus_holding_duplicate_replicas"] = m.gpus_holding_duplicate_replicas;
  if (!gpu_speed.empty()) {
    if (static_cast<int>(gpu_speed.size()) != num_gpus) {
      Raise(absl::InvalidArgumentError(
          absl::StrCat("gpu_speed: expected ", num_gpus, " values (one per GPU), got ", gpu_speed.size())));
    }
    out["max_load_per_speed"] = ToArray(ValueOrRaise(balance::MaxLoadPerSpeed(w, p, gpu_speed)), {layers});
  }
  return out;
}

void Record(LoadRecorder& r, int layer, const py::array& counts) {
  const absl::Span<const int64_t> v = ValueOrRaise(View<int64_t>(counts, "counts", 1, "int64"));
  absl::Status s;
  {
    py::gil_scoped_release release;
    s = r.Record(layer, v);
  }
  RaiseIfError(s);
}

void RecordRouted(LoadRecorder& r, int layer, const py::array& ids) {
  absl::Status s;
  if (py::isinstance<py::array_t<int32_t>>(ids)) {
    const absl::Span<const int32_t> v = ValueOrRaise(View<int32_t>(ids, "expert_ids", 0, "int32"));
    py::gil_scoped_release release;
    s = r.RecordRouted(layer, v);
  } else {
    const absl::Span<const int64_t> v = ValueOrRaise(View<int64_t>(ids, "expert_ids", 0, "int32 or int64"));
    py::gil_scoped_release release;
    s = r.RecordRouted(layer, v);
  }
  RaiseIfError(s);
}

py::dict Snapshot(const LoadRecorder& r) {
  LoadRecorder::Snapshot s = r.TakeSnapshot();
  py::dict out;
  out["steps"] = s.steps;
  out["window_steps"] = s.window_steps;
  out["window"] = ToArray(std::move(s.window), {s.num_layers, s.num_experts});
  out["ema"] = ToArray(std::move(s.ema), {s.num_layers, s.num_experts});
  return out;
}

}  // namespace

void AddEplb(py::module_& m) {
  using py::arg;
  m.def("rebalance", &Rebalance, arg("weight"), arg("num_replicas"), arg("num_groups"), arg("num_nodes"),
        arg("num_gpus"), arg("mode"), arg("no_duplicates"), arg("cross_node_replicas"), arg("gpu_speed"),
        arg("previous_phy2log"), arg("expert_bytes"), arg("tolerance"));
  m.def("time_rebalance", &TimeRebalance, arg("weight"), arg("num_replicas"), arg("num_groups"), arg("num_nodes"),
        arg("num_gpus"), arg("mode"), arg("iters"));
  m.def("metrics", &Metrics, arg("weight"), arg("phy2log"), arg("num_gpus"), arg("gpu_speed"));
  py::class_<LoadRecorder>(m, "LoadRecorder")
      .def(py::init([](int num_layers, int num_experts, int window_steps, double ema_alpha) {
             return ValueOrRaise(LoadRecorder::Create({num_layers, num_experts, window_steps, ema_alpha}));
           }),
           arg("num_layers"), arg("num_experts"), arg("window_steps"), arg("ema_alpha"))
      .def("record", &Record, arg("layer"), arg("counts"))
      .def("record_routed", &RecordRouted, arg("layer"), arg("expert_ids"))
      .def("end_step", &LoadRecorder::EndStep, py::call_guard<py::gil_scoped_release>())
      .def("snapshot", &Snapshot);
}

}  // namespace tandem::python
