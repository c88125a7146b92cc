#include "balance/internal/hierarchical.h"

#include <cstdint>

#include "absl/types/span.h"
#include "balance/internal/cascade_sum.h"
#include "balance/internal/packing.h"

namespace tandem::balance::internal {

Shape ResolveShape(int num_experts, int num_replicas, int num_groups, int num_nodes, int num_gpus) {
  const bool hierarchical = num_nodes > 0 && num_groups % num_nodes == 0;
  Shape shape;
  shape.num_experts = num_experts;
  shape.num_replicas = num_replicas;
  shape.num_groups = hierarchical ? num_groups : 1;
  shape.num_nodes = hierarchical ? num_nodes : 1;
  shape.num_gpus = num_gpus;
  return shape;
}

void AssignGroupsToNodes(const float* w, const Shape& shape, TieOrder tie, LayerScratch* s) {
  const int groups = shape.num_groups;
  const int group_size = shape.num_experts / groups;
  const int groups_per_node = groups / shape.num_nodes;
  s->group_pack.resize(groups);
  s->group_rank.resize(groups);
  if (groups_per_node == 1) {
    // The reference's packing is the identity here; no need for the sums.
    for (int g = 0; g < groups; ++g) {
      s->group_pack[g] = g;
      s->group_rank[g] = 0;
    }
  } else {
    s->group_load.resize(groups);
    for (int g = 0; g < groups; ++g) {
      s->group_load[g] = CascadeSum(w + g * group_size, group_size);
    }
    BalancedPacking(s->group_load, shape.num_nodes, tie, {}, s->group_pack.data(), s->group_rank.data(), &s->packing);
  }
  // log2mlog[e] = (pack * groups_per_node + rank) * group_size + e % size.
  s->mlog2log.resize(shape.num_experts);
  for (int g = 0; g < groups; ++g) {
    const int base = (s->group_pack[g] * groups_per_node + s->group_rank[g]) * group_size;
    for (int i = 0; i < group_size; ++i) {
      s->mlog2log[base + i] = g * group_size + i;
    }
  }
}

bool SolveNode(const float* w, const Shape& shape, int node, TieOrder tie, bool no_duplicates, int32_t* phy2log,
               int32_t* rank, LayerScratch* s) {
  const int experts = shape.experts_per_node();
  const int slots = shape.slots_per_node();
  const int gpus = shape.gpus_per_node();
  const int32_t* mlog2log = &s->mlog2log[node * experts];
  s->node_w.resize(experts);
  for (int j = 0; j < experts; ++j) s->node_w[j] = w[mlog2log[j]];

  s->slot_expert.resize(slots);
  s->slot_rank.resize(slots);
  s->count.resize(experts);
  ReplicateExperts(s->node_w, slots, no_duplicates ? gpus : 0, s->slot_expert.data(), s->slot_rank.data(),
                   s->count.data(), &s->packing);

  // Every replica of an expert carries the same float32 key w / count.
  s->slot_w.resize(slots);
  for (int p = 0; p < slots; ++p) {
    const int j = s->slot_expert[p];
    s->slot_w[p] = s->node_w[j] / static_cast<float>(s->count[j]);
  }
  s->gpu.resize(slots);
  s->gpu_rank.resize(slots);
  const absl::Span<const int32_t> owner =
      no_duplicates ? absl::Span<const int32_t>(s->slot_expert) : absl::Span<const int32_t>();
  if (!BalancedPacking(s->slot_w, gpus, tie, owner, s->gpu.data(), s->gpu_rank.data(), &s->packing)) {
    return false;
  }
  const int per_gpu = shape.slots_per_gpu();
  for (int p = 0; p < slots; ++p) {
    const int slot = node * slots + s->gpu[p] * per_gpu + s->gpu_rank[p];
    phy2log[slot] = mlog2log[s->slot_expert[p]];
    rank[slot] = s->slot_rank[p];
  }
  return true;
}

bool SolveLayer(const float* w, const Shape& shape, TieOrder tie, bool no_duplicates, int32_t* phy2log, int32_t* rank,
                LayerScratch* scratch) {
  AssignGroupsToNodes(w, shape, tie, scratch);
  for (int n = 0; n < shape.num_nodes; ++n) {
    if (!SolveNode(w, shape, n, tie, no_duplicates, phy2log, rank, scratch)) {
      return false;
    }
  }
  return true;
}

}  // namespace tandem::balance::internal
