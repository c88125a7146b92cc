// -----------------------------------------------------------------------------
// File: eplb.h
// -----------------------------------------------------------------------------
//
// Expert-parallel load balancing (EPLB): decides how many replicas each MoE
// expert gets and which GPU slot holds each replica, per layer, from recent
// expert loads. The solver reimplements DeepSeek's EPLB reference
// (github.com/deepseek-ai/EPLB, eplb.py at d52c72d) in C++, with the same
// float32 arithmetic: the hierarchical policy (groups packed onto nodes,
// replicas made within each node, replicas packed onto the node's GPUs) when
// num_groups % num_nodes == 0, else the global policy (the same with one
// group and one node). Migration-aware rebalancing is in migration.h, the
// metrics in metrics.h, the data types in placement.h.
//
// Example:
//   const Weights w = Weights::Int64(loads, /*num_layers=*/58, 256);
//   TANDEM_ASSIGN_OR_RETURN(Placement p,
//                           RebalanceExperts(w, 288, 8, 4, 32, {}));

#ifndef TANDEM_BALANCE_EPLB_H_
#define TANDEM_BALANCE_EPLB_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "balance/placement.h"

namespace tandem::balance {

enum class Mode {
  // The reference algorithm with both descending sorts stable (equal keys in
  // ascending index order): identical results on every platform. Differs
  // from kReference only where equal keys meet in a sort.
  kStable,
  // Bit-for-bit the reference's outputs (torch 1.13 on x86-64), ties
  // included: its sorts are libstdc++ std::sort with comparator a > b, which
  // this mode calls the same way.
  kReference,
  // Starts from kReference's plan and improves each layer by local search
  // (see below). Per layer, its max GPU load (float64, each expert's load
  // split evenly over its replicas) is never above kReference's.
  kRefined,
};

struct RebalanceOptions {
  Mode mode = Mode::kStable;
  // No GPU holds two replicas of one expert: replica counts are capped at
  // the GPUs a replica may go to (the node's, on the hierarchical path), and
  // the packing respects it. kInvalidArgument when no such placement exists
  // (a GPU has more slots than its node has experts).
  bool no_duplicates = false;
  // kRefined, hierarchical path: extra replicas (rank >= 1) may go to
  // other nodes than their group's; every expert keeps its rank-0 replica
  // on its group's node. Off by default to keep the reference's rule that
  // a group's replicas share a node.
  bool cross_node_replicas = false;
  // Relative GPU speeds (num_gpus values > 0; empty: all equal). The
  // objective becomes the maximum over GPUs of load / speed: after the
  // mode's plan, each layer's replicas are repacked inside each node for
  // the speeds, with swaps and recounts (balance/internal/speed_packing.h),
  // and the repacked plan is kept only where it lowers that maximum, so no
  // layer is worse than the speed-blind plan on it. Every GPU keeps its
  // slot count and every replica its node. Refused by migration-aware
  // rebalancing.
  std::vector<double> gpu_speed;
};

// UsesHierarchicalPolicy()
//
// The reference's policy choice: hierarchical iff num_groups % num_nodes is
// 0 (num_nodes > 0); otherwise global, and num_groups and num_nodes are not
// used.
bool UsesHierarchicalPolicy(int num_groups, int num_nodes);

// ValidateRebalanceInput()
//
// kInvalidArgument naming the first bad value: the weights (Weights::
// Validate), non-positive counts, and the reference's constraints:
// num_experts % num_groups, num_gpus % num_nodes (hierarchical path only),
// num_replicas % num_gpus, num_replicas >= num_experts; at most 2^26 slots
// over all layers; with no_duplicates, slots per GPU <= experts per node;
// gpu_speed of another length than num_gpus, or a speed that is not finite
// and > 0.
absl::Status ValidateRebalanceInput(const Weights& weights, int num_replicas, int num_groups, int num_nodes,
                                    int num_gpus, const RebalanceOptions& options = {});

// RebalanceExperts()
//
// Places `num_replicas` physical slots per layer on `num_gpus` GPUs in
// `num_nodes` nodes for the loads in `weights` [layers x experts], whose
// experts form `num_groups` equal groups of consecutive ids. Int64 loads are
// cast to float32 first, as in the reference. Deterministic: the same input
// gives the same bits. Errors as ValidateRebalanceInput(), and
// kResourceExhausted if log2phy would exceed 2^28 entries (see
// MakePlacement).
//
// kRefined, per layer, searches from the reference plan (float64 loads):
//   - swaps of replicas between the most loaded GPU and another, and
//     recounts (one replica taken from an expert with several and given to
//     another), while they lower the maximum;
//   - on the hierarchical path, a regrouping (groups swapped between nodes
//     to even out node loads) with the nodes re-solved and searched;
//   - with cross_node_replicas, a plan whose extra replicas may go to any
//     node (replica counts from the whole layer), searched likewise.
// The candidate with the smallest max GPU load wins, the reference plan on
// ties. Without cross_node_replicas every replica stays on its group's
// node, so a layer cannot beat its busiest node's mean load; on skewed
// loads that is most of the gap to total load / GPUs.
absl::StatusOr<Placement> RebalanceExperts(const Weights& weights, int num_replicas, int num_groups, int num_nodes,
                                           int num_gpus, const RebalanceOptions& options = {});

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_EPLB_H_
