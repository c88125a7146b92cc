#include "balance/metrics.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/speeds.h"
#include "base/status_macros.h"

namespace tandem::balance {

absl::StatusOr<std::vector<double>> GpuLoads(const Weights& weights, const Placement& placement, int num_gpus) {
  TANDEM_RETURN_IF_ERROR(weights.Validate());
  TANDEM_RETURN_IF_ERROR(ValidatePlacement(placement, num_gpus));
  if (weights.num_layers() != placement.num_layers || weights.num_experts() != placement.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("placement: expected ", weights.num_layers(), " layers x ",
                                                   weights.num_experts(), " experts as in the weights, got ",
                                                   placement.num_layers, " x ", placement.num_experts));
  }
  const int per_gpu = placement.num_replicas / num_gpus;
  const int experts = placement.num_experts;
  std::vector<double> loads(static_cast<size_t>(placement.num_layers) * num_gpus);
  for (int l = 0; l < placement.num_layers; ++l) {
    for (int s = 0; s < placement.num_replicas; ++s) {
      const int64_t e = placement.expert_of(l, s);
      loads[static_cast<size_t>(l) * num_gpus + s / per_gpu] +=
          weights.AsDouble(int64_t{l} * experts + e) / static_cast<double>(placement.count_of(l, e));
    }
  }
  return loads;
}

absl::StatusOr<PlacementMetrics> ComputeMetrics(const Weights& weights, const Placement& placement, int num_gpus) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<double> loads, GpuLoads(weights, placement, num_gpus));
  PlacementMetrics m;
  double sum_mean = 0.0;
  double sum_max = 0.0;
  const int per_gpu = placement.num_replicas / num_gpus;
  std::vector<int64_t> on_gpu(per_gpu);
  for (int l = 0; l < placement.num_layers; ++l) {
    const double* row = &loads[static_cast<size_t>(l) * num_gpus];
    double total = 0.0;
    double max = 0.0;
    for (int g = 0; g < num_gpus; ++g) {
      total += row[g];
      max = std::max(max, row[g]);
    }
    const double mean = total / num_gpus;
    m.max_gpu_load.push_back(max);
    m.lower_bound.push_back(mean);
    m.balancedness.push_back(max > 0 ? mean / max : 1.0);
    m.imbalance_ratio.push_back(mean > 0 ? (max - mean) / mean : 0.0);
    sum_mean += mean;
    sum_max += max;
    for (int g = 0; g < num_gpus; ++g) {
      for (int i = 0; i < per_gpu; ++i) {
        on_gpu[i] = placement.expert_of(l, g * per_gpu + i);
      }
      std::sort(on_gpu.begin(), on_gpu.end());
      if (std::adjacent_find(on_gpu.begin(), on_gpu.end()) != on_gpu.end()) {
        ++m.gpus_holding_duplicate_replicas;
      }
    }
  }
  m.balancedness_aggregate = sum_max > 0 ? sum_mean / sum_max : 1.0;
  m.imbalance_ratio_aggregate = sum_mean > 0 ? sum_max / sum_mean - 1.0 : 0.0;
  return m;
}

absl::StatusOr<std::vector<double>> MaxLoadPerSpeed(const Weights& weights, const Placement& placement,
                                                    absl::Span<const double> gpu_speed) {
  const int gpus = static_cast<int>(gpu_speed.size());
  TANDEM_RETURN_IF_ERROR(CheckSpeeds("gpu_speed", gpu_speed));
  if (gpus == 0) return absl::InvalidArgumentError("gpu_speed: expected one speed per GPU, got none");
  TANDEM_ASSIGN_OR_RETURN(std::vector<double> loads, GpuLoads(weights, placement, gpus));
  std::vector<double> out(placement.num_layers, 0.0);
  for (int l = 0; l < placement.num_layers; ++l) {
    for (int g = 0; g < gpus; ++g) out[l] = std::max(out[l], loads[static_cast<size_t>(l) * gpus + g] / gpu_speed[g]);
  }
  return out;
}

}  // namespace tandem::balance
