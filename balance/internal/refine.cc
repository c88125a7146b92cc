#include "balance/internal/refine.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <numeric>
#include <utility>
#include <vector>

#include "balance/internal/hierarchical.h"
#include "balance/internal/layer_search.h"
#include "balance/internal/packing.h"

namespace tandem::balance::internal {
namespace {

// A candidate must beat the best by more than rounding noise.
constexpr double kMinGain = 1e-12;

// Float64 load of each group.
std::vector<double> GroupLoads(const double* w, const Shape& shape) {
  const int size = shape.num_experts / shape.num_groups;
  std::vector<double> loads(shape.num_groups, 0.0);
  for (int e = 0; e < shape.num_experts; ++e) loads[e / size] += w[e];
  return loads;
}

// The node of each group in a plan (from its first expert's slot).
std::vector<int> NodeOfGroups(const int32_t* phy2log, const Shape& shape) {
  const int size = shape.num_experts / shape.num_groups;
  const int slots_per_node = shape.slots_per_node();
  std::vector<int> node(shape.num_groups, 0);
  for (int s = 0; s < shape.num_replicas; ++s) {
    if (phy2log[s] % size == 0) node[phy2log[s] / size] = s / slots_per_node;
  }
  return node;
}

// Swaps groups between the most loaded node and the others while that
// lowers the larger of the two node loads. Returns true if anything moved.
bool BalanceGroups(const std::vector<double>& group_load, int num_nodes, std::vector<int>* node_of_group) {
  std::vector<double> node_load(num_nodes, 0.0);
  for (size_t g = 0; g < group_load.size(); ++g) {
    node_load[(*node_of_group)[g]] += group_load[g];
  }
  bool moved = false;
  for (int iter = 0; iter < 16 * num_nodes; ++iter) {
    const int n = static_cast<int>(std::max_element(node_load.begin(), node_load.end()) - node_load.begin());
    const double top = node_load[n];
    double best = top * (1 - kMinGain);
    int best_a = -1;
    int best_b = -1;
    for (size_t a = 0; a < group_load.size(); ++a) {
      if ((*node_of_group)[a] != n) continue;
      for (size_t b = 0; b < group_load.size(); ++b) {
        const int m = (*node_of_group)[b];
        const double delta = group_load[a] - group_load[b];
        if (m == n || delta <= 0) continue;
        const double worse = std::max(top - delta, node_load[m] + delta);
        if (worse < best) {
          best = worse;
          best_a = static_cast<int>(a);
          best_b = static_cast<int>(b);
        }
      }
    }
    if (best_a < 0) break;
    const int m = (*node_of_group)[best_b];
    const double delta = group_load[best_a] - group_load[best_b];
    node_load[n] -= delta;
    node_load[m] += delta;
    std::swap((*node_of_group)[best_a], (*node_of_group)[best_b]);
    moved = true;
  }
  return moved;
}

// Solves every node of a layer as the reference would (stable ties) for a
// given group-to-node assignment, each node's groups by descending load.
bool SolveWithGroups(const float* w32, const Shape& shape, const std::vector<double>& group_load,
                     const std::vector<int>& node_of_group, bool no_duplicates, int32_t* phy2log, int32_t* rank,
                     LayerScratch* scratch) {
  const int size = shape.num_experts / shape.num_groups;
  std::vector<int> groups(shape.num_groups);
  std::iota(groups.begin(), groups.end(), 0);
  std::stable_sort(groups.begin(), groups.end(), [&](int a, int b) {
    return node_of_group[a] < node_of_group[b] ||
           (node_of_group[a] == node_of_group[b] && group_load[a] > group_load[b]);
  });
  scratch->mlog2log.resize(shape.num_experts);
  for (int i = 0; i < shape.num_groups; ++i) {
    for (int j = 0; j < size; ++j) {
      scratch->mlog2log[i * size + j] = groups[i] * size + j;
    }
  }
  for (int n = 0; n < shape.num_nodes; ++n) {
    if (!SolveNode(w32, shape, n, TieOrder::kStable, no_duplicates, phy2log, rank, scratch)) {
      return false;
    }
  }
  return true;
}

// Builds a plan where every expert keeps its rank-0 replica on its home node
// and extra replicas go anywhere: replica counts by the reference's greedy
// rule over all experts (float64), then replicas in descending load order to
// the least-loaded GPU with room, reserving each node's room for its homes.
bool BuildCrossNode(const double* w, const Shape& shape, const std::vector<int>& home_node, bool no_duplicates,
                    int32_t* phy2log, int32_t* rank) {
  const int experts = shape.num_experts;
  const int gpus = shape.num_gpus;
  const int per_gpu = shape.slots_per_gpu();
  const int gpus_per_node = shape.gpus_per_node();
  std::vector<int> count(experts, 1);
  using Key = std::pair<double, int>;  // (per-replica load, -expert)
  std::vector<Key> heap;
  for (int e = 0; e < experts; ++e) heap.emplace_back(w[e], -e);
  std::make_heap(heap.begin(), heap.end());
  for (int extra = shape.num_replicas - experts; extra > 0; --extra) {
    if (heap.empty()) return false;
    std::pop_heap(heap.begin(), heap.end());
    const int e = -heap.back().second;
    heap.pop_back();
    ++count[e];
    if (!no_duplicates || count[e] < gpus) {
      heap.emplace_back(w[e] / count[e], -e);
      std::push_heap(heap.begin(), heap.end());
    }
  }
  struct Replica {
    double load;
    int expert;
    int rank;
  };
  std::vector<Replica> replicas;
  for (int e = 0; e < experts; ++e) {
    for (int r = 0; r < count[e]; ++r) replicas.push_back({w[e] / count[e], e, r});
  }
  std::sort(replicas.begin(), replicas.end(), [](const Replica& a, const Replica& b) {
    if (a.load != b.load) return a.load > b.load;
    if (a.expert != b.expert) return a.expert < b.expert;
    return a.rank < b.rank;
  });
  std::vector<int> homes_left(shape.num_nodes, 0);
  for (int e = 0; e < experts; ++e) ++homes_left[home_node[e]];
  std::vector<int> node_room(shape.num_nodes, shape.slots_per_node());
  std::vector<int> used(gpus, 0);
  std::vector<double> load(gpus, 0.0);
  for (const Replica& r : replicas) {
    int best = -1;
    for (int g = 0; g < gpus; ++g) {
      const int n = g / gpus_per_node;
      if (used[g] >= per_gpu) continue;
      if (r.rank == 0 ? n != home_node[r.expert] : node_room[n] <= homes_left[n]) {
        continue;
      }
      if (no_duplicates && std::find(phy2log + g * per_gpu, phy2log + g * per_gpu + used[g], r.expert) !=
                               phy2log + g * per_gpu + used[g]) {
        continue;
      }
      if (best < 0 || load[g] < load[best]) best = g;
    }
    if (best < 0) return false;
    const int slot = best * per_gpu + used[best]++;
    phy2log[slot] = r.expert;
    rank[slot] = r.rank;
    load[best] += r.load;
    const int n = best / gpus_per_node;
    --node_room[n];
    if (r.rank == 0) --homes_left[n];
  }
  return true;
}

}  // namespace

void RefineLayers(const Weights& weights, const Shape& shape, const RefineOptions& options,
                  std::vector<int32_t>* phy2log, std::vector<int32_t>* rank) {
  const int experts = shape.num_experts;
  const int slots = shape.num_replicas;
  const bool multi_node = shape.num_nodes > 1;
  std::vector<double> w(experts);
  std::vector<float> w32(experts);
  std::vector<int32_t> cand_p2l(slots), cand_rank(slots);
  std::vector<int32_t> cross_p2l(slots), cross_rank(slots);
  std::vector<int> home(experts);
  LayerScratch scratch;
  LayerSearch search(shape);
  SearchOptions search_options;
  search_options.no_duplicates = options.no_duplicates;
  search_options.max_moves = 4 * slots;
  const int layers = weights.num_layers();
  for (int l = 0; l < layers; ++l) {
    for (int e = 0; e < experts; ++e) {
      w[e] = weights.AsDouble(int64_t{l} * experts + e);
      w32[e] = weights.AsFloat32(int64_t{l} * experts + e);
    }
    int32_t* out_p2l = &(*phy2log)[int64_t{l} * slots];
    int32_t* out_rank = &(*rank)[int64_t{l} * slots];
    search.Assign(w.data(), out_p2l, out_rank);
    double best = search.MaxGpuLoad();
    search_options.stop_at = std::accumulate(w.begin(), w.end(), 0.0) / shape.num_gpus * (1 + kMinGain);
    // Searches from the plan `p2l` / `rnk` and keeps the result if it beats
    // the best so far.
    auto consider = [&](const int32_t* p2l, const int32_t* rnk, Pin pin) {
      search.Assign(w.data(), p2l, rnk);
      search_options.pin = pin;
      search.Search(search_options);
      const double max = search.MaxGpuLoad();
      if (max < best) {
        best = max;
        search.Store(out_p2l, out_rank);
      }
    };
    std::copy(out_p2l, out_p2l + slots, cand_p2l.begin());
    std::copy(out_rank, out_rank + slots, cand_rank.begin());
    if (!multi_node) {
      consider(cand_p2l.data(), cand_rank.data(), Pin::kNone);
      continue;
    }
    // A plan that keeps groups on nodes cannot beat its busiest node's mean.
    const std::vector<double> group_load = GroupLoads(w.data(), shape);
    std::vector<int> node_of_group = NodeOfGroups(out_p2l, shape);
    auto node_bound = [&]() {
      std::vector<double> load(shape.num_nodes, 0.0);
      for (int g = 0; g < shape.num_groups; ++g) {
        load[node_of_group[g]] += group_load[g];
      }
      return *std::max_element(load.begin(), load.end()) / shape.gpus_per_node();
    };
    const double reference_bound = node_bound();
    const bool regrouped =
        shape.num_groups > shape.num_nodes && BalanceGroups(group_load, shape.num_nodes, &node_of_group);
    if (options.cross_node) {
      const int size = experts / shape.num_groups;
      for (int e = 0; e < experts; ++e) home[e] = node_of_group[e / size];
      if (BuildCrossNode(w.data(), shape, home, options.no_duplicates, cross_p2l.data(), cross_rank.data())) {
        consider(cross_p2l.data(), cross_rank.data(), Pin::kHome);
      }
    }
    if (reference_bound < best * (1 - kMinGain)) {
      consider(cand_p2l.data(), cand_rank.data(), Pin::kNode);
    }
    if (regrouped && node_bound() < best * (1 - kMinGain) &&
        SolveWithGroups(w32.data(), shape, group_load, node_of_group, options.no_duplicates, cand_p2l.data(),
                        cand_rank.data(), &scratch)) {
      consider(cand_p2l.data(), cand_rank.data(), Pin::kNode);
    }
  }
}

}  // namespace tandem::balance::internal
