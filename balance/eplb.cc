#include "balance/eplb.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "balance/internal/hierarchical.h"
#include "balance/internal/packing.h"
#include "balance/internal/refine.h"
#include "balance/internal/speed_packing.h"
#include "base/speeds.h"
#include "base/status_macros.h"

namespace tandem::balance {
namespace {

// Slots over all layers beyond which a request is refused rather than
// attempted (the outputs alone would take gigabytes).
constexpr int64_t kMaxSlots = int64_t{1} << 26;

absl::Status CheckPositive(const char* name, int value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": expected a positive count, got ", value));
}

absl::Status CheckMultiple(const char* name, int value, const char* of, int divisor, const char* note) {
  if (value % divisor == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": expected a multiple of ", of, " = ", divisor, note, ", got ", value));
}

}  // namespace

bool UsesHierarchicalPolicy(int num_groups, int num_nodes) { return num_nodes > 0 && num_groups % num_nodes == 0; }

absl::Status ValidateRebalanceInput(const Weights& weights, int num_replicas, int num_groups, int num_nodes,
                                    int num_gpus, const RebalanceOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckPositive("num_replicas", num_replicas));
  TANDEM_RETURN_IF_ERROR(CheckPositive("num_groups", num_groups));
  TANDEM_RETURN_IF_ERROR(CheckPositive("num_nodes", num_nodes));
  TANDEM_RETURN_IF_ERROR(CheckPositive("num_gpus", num_gpus));
  TANDEM_RETURN_IF_ERROR(weights.Validate());
  const int experts = weights.num_experts();
  const bool hierarchical = UsesHierarchicalPolicy(num_groups, num_nodes);
  if (hierarchical) {
    TANDEM_RETURN_IF_ERROR(CheckMultiple("num_experts", experts, "num_groups", num_groups, ""));
    TANDEM_RETURN_IF_ERROR(CheckMultiple("num_gpus", num_gpus, "num_nodes", num_nodes,
                                         " (hierarchical policy, as num_groups % num_nodes == 0)"));
  }
  TANDEM_RETURN_IF_ERROR(CheckMultiple("num_replicas", num_replicas, "num_gpus", num_gpus, ""));
  if (int64_t{weights.num_layers()} * num_replicas > kMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("num_replicas: expected at most ", kMaxSlots, " slots over all ",
                                                   weights.num_layers(), " layers, got ", num_replicas, " per layer"));
  }
  if (num_replicas < experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_replicas: expected at least num_experts = ", experts, ", got ", num_replicas));
  }
  const int nodes = hierarchical ? num_nodes : 1;
  if (options.no_duplicates && num_replicas / num_gpus > experts / nodes) {
    return absl::InvalidArgumentError(absl::StrCat("no_duplicates: infeasible: expected at most ", experts / nodes,
                                                   " slots per GPU (the experts of a node), got ",
                                                   num_replicas / num_gpus));
  }
  if (!options.gpu_speed.empty()) {
    if (static_cast<int>(options.gpu_speed.size()) != num_gpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("gpu_speed: expected num_gpus = ", num_gpus, " speeds, got ", options.gpu_speed.size()));
    }
    TANDEM_RETURN_IF_ERROR(CheckSpeeds("gpu_speed", options.gpu_speed));
  }
  return absl::OkStatus();
}

absl::StatusOr<Placement> RebalanceExperts(const Weights& weights, int num_replicas, int num_groups, int num_nodes,
                                           int num_gpus, const RebalanceOptions& options) {
  TANDEM_RETURN_IF_ERROR(ValidateRebalanceInput(weights, num_replicas, num_groups, num_nodes, num_gpus, options));
  const internal::Shape shape =
      internal::ResolveShape(weights.num_experts(), num_replicas, num_groups, num_nodes, num_gpus);

  const int layers = weights.num_layers();
  const int64_t cells = int64_t{layers} * shape.num_experts;
  std::vector<float> w32(cells);
  for (int64_t i = 0; i < cells; ++i) w32[i] = weights.AsFloat32(i);

  const internal::TieOrder tie =
      options.mode == Mode::kStable ? internal::TieOrder::kStable : internal::TieOrder::kReference;
  std::vector<int32_t> phy2log(int64_t{layers} * num_replicas);
  std::vector<int32_t> rank(phy2log.size());
  internal::LayerScratch scratch;
  for (int l = 0; l < layers; ++l) {
    const int64_t slot0 = int64_t{l} * num_replicas;
    if (!internal::SolveLayer(&w32[int64_t{l} * shape.num_experts], shape, tie, options.no_duplicates, &phy2log[slot0],
                              &rank[slot0], &scratch)) {
      return absl::InternalError(absl::StrCat("layer ", l,
                                              ": no placement without duplicates found (a bug: "
                                              "the input was checked to admit one)"));
    }
  }
  if (options.mode == Mode::kRefined) {
    internal::RefineOptions refine;
    refine.no_duplicates = options.no_duplicates;
    refine.cross_node = options.cross_node_replicas;
    internal::RefineLayers(weights, shape, refine, &phy2log, &rank);
  }
  if (!options.gpu_speed.empty()) {
    std::vector<double> w64(shape.num_experts);
    std::vector<int32_t> p2l(num_replicas), r(num_replicas);
    for (int l = 0; l < layers; ++l) {
      for (int e = 0; e < shape.num_experts; ++e) w64[e] = weights.AsDouble(int64_t{l} * shape.num_experts + e);
      int32_t* layer_p2l = &phy2log[int64_t{l} * num_replicas];
      int32_t* layer_rank = &rank[int64_t{l} * num_replicas];
      std::copy(layer_p2l, layer_p2l + num_replicas, p2l.begin());
      std::copy(layer_rank, layer_rank + num_replicas, r.begin());
      const double* speed = options.gpu_speed.data();
      if (internal::RepackForSpeed(w64.data(), shape, speed, options.no_duplicates, p2l.data(), r.data()) &&
          internal::SpeedScaledMax(w64.data(), shape, speed, p2l.data()) <
              internal::SpeedScaledMax(w64.data(), shape, speed, layer_p2l)) {
        std::copy(p2l.begin(), p2l.end(), layer_p2l);
        std::copy(r.begin(), r.end(), layer_rank);
      }
    }
  }
  return MakePlacement(layers, shape.num_experts, num_replicas, std::vector<int64_t>(phy2log.begin(), phy2log.end()),
                       rank);
}

}  // namespace tandem::balance
