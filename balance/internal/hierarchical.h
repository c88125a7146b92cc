// -----------------------------------------------------------------------------
// File: hierarchical.h
// -----------------------------------------------------------------------------
//
// The EPLB reference's hierarchical policy on one layer (the global policy
// is this with one group and one node): pack groups onto nodes by group load,
// replicate experts within each node, pack each node's replicas onto its
// GPUs. Inputs are assumed validated (see eplb.h).

#ifndef TANDEM_BALANCE_INTERNAL_HIERARCHICAL_H_
#define TANDEM_BALANCE_INTERNAL_HIERARCHICAL_H_

#include <cstdint>
#include <vector>

#include "balance/internal/packing.h"

namespace tandem::balance::internal {

// A validated problem with the policy resolved: for the global policy
// num_groups and num_nodes are 1.
struct Shape {
  int num_experts = 0;
  int num_replicas = 0;
  int num_groups = 0;
  int num_nodes = 0;
  int num_gpus = 0;

  int experts_per_node() const { return num_experts / num_nodes; }
  int slots_per_node() const { return num_replicas / num_nodes; }
  int gpus_per_node() const { return num_gpus / num_nodes; }
  int slots_per_gpu() const { return num_replicas / num_gpus; }
};

// ResolveShape()
//
// The Shape the reference solves for these (validated) arguments: the
// global policy (num_groups % num_nodes != 0) becomes one group, one node.
Shape ResolveShape(int num_experts, int num_replicas, int num_groups, int num_nodes, int num_gpus);

// Buffers reused across layers.
struct LayerScratch {
  PackingScratch packing;
  std::vector<float> group_load;
  std::vector<int32_t> group_pack, group_rank;
  std::vector<int32_t> mlog2log;
  std::vector<float> node_w, slot_w;
  std::vector<int32_t> slot_expert, slot_rank, count;
  std::vector<int32_t> gpu, gpu_rank;
};

// AssignGroupsToNodes()
//
// Step 1 alone: fills `mlog2log` (node-major: node n holds experts
// [n*E/N, (n+1)*E/N) in mlog numbering) for layer weights `w`.
void AssignGroupsToNodes(const float* w, const Shape& shape, TieOrder tie, LayerScratch* scratch);

// SolveNode()
//
// Steps 2 and 3 for node `node`, whose experts (in mlog order) are
// scratch->mlog2log[node*E/N ...]: replicates them into the node's slots and
// packs those onto its GPUs, writing the node's part of `phy2log` and `rank`
// (indexed by the layer's slot). With `no_duplicates`, replica counts are
// capped at the node's GPU count and no GPU gets two replicas of one expert.
// Returns false only if that constraint cannot be met.
bool SolveNode(const float* w, const Shape& shape, int node, TieOrder tie, bool no_duplicates, int32_t* phy2log,
               int32_t* rank, LayerScratch* scratch);

// SolveLayer()
//
// The whole policy for one layer: AssignGroupsToNodes, then SolveNode for
// every node. Writes phy2log[num_replicas] and rank[num_replicas].
bool SolveLayer(const float* w, const Shape& shape, TieOrder tie, bool no_duplicates, int32_t* phy2log, int32_t* rank,
                LayerScratch* scratch);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_HIERARCHICAL_H_
