// -----------------------------------------------------------------------------
// File: migration.h
// -----------------------------------------------------------------------------
//
// Migration-aware rebalancing: given the placement in service (its phy2log)
// and new loads, finds a placement about as balanced as a fresh solve that
// changes as few slots as possible. A slot whose expert changes is a moved
// replica: that expert's weights must be copied in.
//
// Per layer, two plans are built and the one with fewer moves wins (ties go
// to the first):
//   1. incremental: starting from the previous plan, local moves (a swap
//      changes two slots, a recount one) on the most loaded GPU, taken by
//      gain per changed slot, until the balancedness target is met;
//   2. aligned fresh: the fresh plan with its nodes and GPUs renumbered
//      (min-cost matching) and each GPU's experts put in the slots that
//      already hold them.
// The target per layer is the fresh plan's balancedness minus `tolerance`;
// plan 2 always meets it.
//
// Example:
//   MigrationOptions options;
//   options.expert_bytes = int64_t{44} << 20;
//   TANDEM_ASSIGN_OR_RETURN(MigrationPlan plan, RebalanceWithMigration(
//       weights, previous.phy2log, 288, 8, 4, 32, options));

#ifndef TANDEM_BALANCE_MIGRATION_H_
#define TANDEM_BALANCE_MIGRATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "balance/eplb.h"
#include "balance/metrics.h"
#include "balance/placement.h"

namespace tandem::balance {

struct MigrationOptions {
  RebalanceOptions solve;    // how the fresh plan is solved (gpu_speed: refused)
  double tolerance = 0.01;   // balancedness points a layer may give up
  int64_t expert_bytes = 0;  // size of one expert's weights, for moved_bytes
};

struct MigrationPlan {
  Placement placement;
  std::vector<int64_t> moved_per_layer;  // slots whose expert changed
  int64_t moved_replicas = 0;
  int64_t moved_bytes = 0;         // moved_replicas * expert_bytes
  PlacementMetrics metrics;        // of `placement`
  PlacementMetrics fresh_metrics;  // of the fresh solve
};

// RebalanceWithMigration()
//
// `previous_phy2log` is [layers][num_replicas] of the placement in service;
// the other arguments are as for RebalanceExperts(). Errors: those of
// RebalanceExperts(), and kInvalidArgument if the previous plan's shape does
// not match or it leaves an expert without a replica, if `tolerance` is
// negative or not finite, or if `expert_bytes` is negative. Each layer's balancedness is at least the fresh
// solve's minus `tolerance` (both as metrics.h computes them).
absl::StatusOr<MigrationPlan> RebalanceWithMigration(const Weights& weights, absl::Span<const int64_t> previous_phy2log,
                                                     int num_replicas, int num_groups, int num_nodes, int num_gpus,
                                                     const MigrationOptions& options = {});

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_MIGRATION_H_
