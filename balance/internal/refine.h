// -----------------------------------------------------------------------------
// File: refine.h
// -----------------------------------------------------------------------------
//
// The `refined` mode: improves a reference plan layer by layer. Candidates
// per layer are the reference plan itself, the plan after a local search
// (layer_search.h), a plan built from a better group-to-node assignment and,
// with cross_node, a plan whose extra replicas may go to any node, each
// searched. Candidates that cannot beat the best so far (a node-bound
// argument) are skipped. The smallest max GPU load (float64, exactly as
// metrics.h computes it) wins; the reference plan wins ties, so no layer
// gets worse.

#ifndef TANDEM_BALANCE_INTERNAL_REFINE_H_
#define TANDEM_BALANCE_INTERNAL_REFINE_H_

#include <cstdint>
#include <vector>

#include "balance/internal/hierarchical.h"
#include "balance/placement.h"

namespace tandem::balance::internal {

struct RefineOptions {
  bool no_duplicates = false;
  // Extra replicas (rank >= 1) may be placed on any node; every expert keeps
  // its rank-0 replica on the node of its group. Hierarchical path only.
  bool cross_node = false;
};

// RefineLayers()
//
// Improves the plan in `phy2log` / `rank` ([layers][num_replicas], as
// SolveLayer writes them for `weights`, validated) in place.
void RefineLayers(const Weights& weights, const Shape& shape, const RefineOptions& options,
                  std::vector<int32_t>* phy2log, std::vector<int32_t>* rank);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_REFINE_H_
