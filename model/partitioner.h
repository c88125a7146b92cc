// -----------------------------------------------------------------------------
// File: partitioner.h
// -----------------------------------------------------------------------------
//
// Assigns the model's units (model.h: input projection, blocks, head) to
// pipeline stages as contiguous ranges, from per-unit costs (measured or
// given), minimising the slowest stage; or, with DualPipe's V placement,
// 2P stages on P ranks where rank r holds stages r and 2P-1-r (so the first
// and last units share rank 0), minimising the slowest rank. Both are exact
// (dynamic programming), not greedy.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Partition p, PartitionUnits(costs, 4));
//   // stage s holds units [p.bounds[s], p.bounds[s + 1]) on rank p.rank[s]
#ifndef TANDEM_MODEL_PARTITIONER_H_
#define TANDEM_MODEL_PARTITIONER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tandem::model {

struct Partition {
  std::vector<int> bounds;         // num_stages + 1 unit indices
  std::vector<int> rank;           // stage -> rank
  std::vector<double> stage_cost;  // per stage
  std::vector<double> rank_cost;   // per rank
  double max_rank_cost = 0.0;      // the objective
};

// PartitionUnits()
//
// One stage per rank. Among optimal partitions, the one whose boundaries
// are lexicographically smallest. kInvalidArgument for a cost that is
// negative or not finite, or fewer units than stages.
absl::StatusOr<Partition> PartitionUnits(absl::Span<const double> costs, int num_stages);

// PartitionVShape()
//
// 2 * num_ranks stages, rank r holding stages r and 2*num_ranks-1-r. Errors
// as PartitionUnits(); also kInvalidArgument for more than 128 units (the
// exact search is O(ranks * units^4)).
absl::StatusOr<Partition> PartitionVShape(absl::Span<const double> costs, int num_ranks);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_PARTITIONER_H_
