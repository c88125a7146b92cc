// -----------------------------------------------------------------------------
// File: metrics.h
// -----------------------------------------------------------------------------
//
// Quality of any placement under given loads, in float64, with each expert's
// load split evenly over its replicas (the model the EPLB reference
// optimises). balancedness = mean GPU load / max GPU load (1 is perfect),
// aggregated over layers as sum(mean) / sum(max) (vLLM's convention);
// imbalance ratio = (max - mean) / mean (TensorRT-LLM's); the lower bound on
// any placement's max GPU load is total load / GPUs, i.e. the mean.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(PlacementMetrics m,
//                           ComputeMetrics(weights, placement, num_gpus));
//   printf("%.4f\n", m.balancedness_aggregate);

#ifndef TANDEM_BALANCE_METRICS_H_
#define TANDEM_BALANCE_METRICS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "balance/placement.h"

namespace tandem::balance {

struct PlacementMetrics {
  // Per layer.
  std::vector<double> max_gpu_load;
  std::vector<double> lower_bound;      // total load / GPUs (= mean GPU load)
  std::vector<double> balancedness;     // mean / max; 1 when all loads are 0
  std::vector<double> imbalance_ratio;  // (max - mean) / mean; 0 when mean 0
  // Over all layers: sum(mean) / sum(max), and sum(max) / sum(mean) - 1.
  double balancedness_aggregate = 1.0;
  double imbalance_ratio_aggregate = 0.0;
  // (layer, GPU) pairs that hold two or more replicas of one expert.
  int gpus_holding_duplicate_replicas = 0;
};

// GpuLoads()
//
// The [layers][num_gpus] float64 GPU loads of `placement` (slots summed in
// order). kInvalidArgument if the placement is inconsistent (see
// ValidatePlacement) or its shape does not match `weights`.
absl::StatusOr<std::vector<double>> GpuLoads(const Weights& weights, const Placement& placement, int num_gpus);

// ComputeMetrics()
//
// The metrics above for `placement` under `weights`; errors as GpuLoads().
absl::StatusOr<PlacementMetrics> ComputeMetrics(const Weights& weights, const Placement& placement, int num_gpus);

// MaxLoadPerSpeed()
//
// Per layer, the largest GPU load divided by that GPU's speed (the time the
// slowest GPU needs, for GPUs of relative speeds `gpu_speed`, one per GPU).
// Errors as GpuLoads(), or kInvalidArgument naming a speed that is not
// finite and > 0 or a count other than num_gpus.
absl::StatusOr<std::vector<double>> MaxLoadPerSpeed(const Weights& weights, const Placement& placement,
                                                    absl::Span<const double> gpu_speed);

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_METRICS_H_
