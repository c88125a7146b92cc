#include "balance/migration.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "balance/internal/assignment.h"
#include "balance/internal/hierarchical.h"
#include "balance/internal/layer_search.h"
#include "base/status_macros.h"

namespace tandem::balance {
namespace {

using internal::Shape;

// Slots kept in place if fresh GPU `fresh` (its experts) replaces previous
// GPU `prev`: the size of the multisets' intersection.
int Overlap(const int32_t* fresh, const int32_t* prev, int per_gpu, std::vector<int32_t>* scratch) {
  scratch->assign(fresh, fresh + per_gpu);
  int kept = 0;
  for (int i = 0; i < per_gpu; ++i) {
    auto it = std::find(scratch->begin(), scratch->end(), prev[i]);
    if (it != scratch->end()) {
      *it = -1;
      ++kept;
    }
  }
  return kept;
}

// The fresh layer plan renumbered to keep as many slots as possible: nodes
// to nodes and, inside, GPUs to GPUs by min-cost matching on changed slots;
// on each GPU, experts the previous plan has there keep their slot.
void AlignToPrevious(const Shape& shape, const int32_t* fresh_p2l, const int32_t* fresh_rank, const int32_t* prev_p2l,
                     int32_t* out_p2l, int32_t* out_rank) {
  const int per_gpu = shape.slots_per_gpu();
  const int gpus = shape.gpus_per_node();
  const int nodes = shape.num_nodes;
  std::vector<int32_t> scratch;
  // inner[a][b]: GPU matching of fresh node a onto previous node b.
  std::vector<std::vector<int>> inner(static_cast<size_t>(nodes) * nodes);
  std::vector<int64_t> node_cost(static_cast<size_t>(nodes) * nodes);
  std::vector<int64_t> cost(static_cast<size_t>(gpus) * gpus);
  for (int a = 0; a < nodes; ++a) {
    for (int b = 0; b < nodes; ++b) {
      for (int i = 0; i < gpus; ++i) {
        for (int j = 0; j < gpus; ++j) {
          cost[i * gpus + j] = per_gpu - Overlap(fresh_p2l + (a * gpus + i) * per_gpu,
                                                 prev_p2l + (b * gpus + j) * per_gpu, per_gpu, &scratch);
        }
      }
      std::vector<int>& match = inner[a * nodes + b];
      match = internal::MinCostAssignment(cost, gpus);
      int64_t total = 0;
      for (int i = 0; i < gpus; ++i) total += cost[i * gpus + match[i]];
      node_cost[a * nodes + b] = total;
    }
  }
  const std::vector<int> node_match = internal::MinCostAssignment(node_cost, nodes);
  std::vector<char> taken(per_gpu);
  for (int a = 0; a < nodes; ++a) {
    const int b = node_match[a];
    for (int i = 0; i < gpus; ++i) {
      const int from = (a * gpus + i) * per_gpu;
      const int to = (b * gpus + inner[a * nodes + b][i]) * per_gpu;
      std::fill(taken.begin(), taken.end(), 0);
      std::vector<char> filled(per_gpu, 0);
      for (int k = 0; k < per_gpu; ++k) {  // keep experts already there
        for (int i2 = 0; i2 < per_gpu; ++i2) {
          if (!taken[i2] && fresh_p2l[from + i2] == prev_p2l[to + k]) {
            taken[i2] = 1;
            filled[k] = 1;
            out_p2l[to + k] = fresh_p2l[from + i2];
            out_rank[to + k] = fresh_rank[from + i2];
            break;
          }
        }
      }
      int next = 0;
      for (int k = 0; k < per_gpu; ++k) {  // the rest in fresh order
        if (filled[k]) continue;
        while (taken[next]) ++next;
        taken[next] = 1;
        out_p2l[to + k] = fresh_p2l[from + next];
        out_rank[to + k] = fresh_rank[from + next];
      }
    }
  }
}

int ChangedSlots(const int32_t* a, const int32_t* b, int n) {
  int changed = 0;
  for (int i = 0; i < n; ++i) changed += a[i] != b[i];
  return changed;
}

}  // namespace

absl::StatusOr<MigrationPlan> RebalanceWithMigration(const Weights& weights, absl::Span<const int64_t> previous_phy2log,
                                                     int num_replicas, int num_groups, int num_nodes, int num_gpus,
                                                     const MigrationOptions& options) {
  if (!std::isfinite(options.tolerance) || options.tolerance < 0) {
    return absl::InvalidArgumentError(absl::StrCat("tolerance: expected a finite value >= 0, got ", options.tolerance));
  }
  if (options.expert_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("expert_bytes: expected a size >= 0, got ", options.expert_bytes));
  }
  if (!options.solve.gpu_speed.empty()) {
    return absl::InvalidArgumentError(
        "gpu_speed: not supported by migration-aware rebalancing (its search balances equal GPUs); solve fresh");
  }
  TANDEM_ASSIGN_OR_RETURN(Placement fresh,
                          RebalanceExperts(weights, num_replicas, num_groups, num_nodes, num_gpus, options.solve));
  absl::StatusOr<Placement> previous =
      PlacementFromPhy2Log(weights.num_layers(), weights.num_experts(), num_replicas, previous_phy2log);
  if (!previous.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("previous plan: ", previous.status().message()));
  }
  MigrationPlan plan;
  TANDEM_ASSIGN_OR_RETURN(plan.fresh_metrics, ComputeMetrics(weights, fresh, num_gpus));

  const Shape shape = internal::ResolveShape(weights.num_experts(), num_replicas, num_groups, num_nodes, num_gpus);
  internal::SearchOptions search_options;
  search_options.no_duplicates = options.solve.no_duplicates;
  search_options.per_change = true;
  if (shape.num_nodes > 1) {
    search_options.pin = options.solve.mode == Mode::kRefined && options.solve.cross_node_replicas
                             ? internal::Pin::kHome
                             : internal::Pin::kNode;
  }

  const int layers = weights.num_layers();
  const int experts = weights.num_experts();
  const int slots = num_replicas;
  // Ranks: the previous plan's are by slot order; the fresh plan's are
  // recovered from its log2phy.
  std::vector<int32_t> prev_p2l(previous->phy2log.begin(), previous->phy2log.end());
  std::vector<int32_t> prev_rank(prev_p2l.size());
  std::vector<int32_t> fresh_p2l(fresh.phy2log.begin(), fresh.phy2log.end());
  std::vector<int32_t> fresh_rank(fresh_p2l.size());
  for (int l = 0; l < layers; ++l) {
    for (int e = 0; e < experts; ++e) {
      for (int r = 0; r < fresh.max_count; ++r) {
        const int64_t base = (int64_t{l} * experts + e);
        const int64_t slot = fresh.log2phy[base * fresh.max_count + r];
        if (slot >= 0) fresh_rank[int64_t{l} * slots + slot] = r;
      }
      for (int r = 0; r < previous->max_count; ++r) {
        const int64_t base = (int64_t{l} * experts + e);
        const int64_t slot = previous->log2phy[base * previous->max_count + r];
        if (slot >= 0) prev_rank[int64_t{l} * slots + slot] = r;
      }
    }
  }

  std::vector<int32_t> out_p2l(prev_p2l.size()), out_rank(prev_p2l.size());
  std::vector<int32_t> cand_p2l(slots), cand_rank(slots);
  std::vector<double> w(experts);
  internal::LayerSearch search(shape);
  for (int l = 0; l < layers; ++l) {
    for (int e = 0; e < experts; ++e) {
      w[e] = weights.AsDouble(int64_t{l} * experts + e);
    }
    const int64_t base = int64_t{l} * slots;
    const double target = plan.fresh_metrics.balancedness[l] - options.tolerance;
    // Aligned fresh plan; it is as balanced as the fresh one up to the
    // rounding of summing a GPU's slots in another order, so check it.
    AlignToPrevious(shape, &fresh_p2l[base], &fresh_rank[base], &prev_p2l[base], cand_p2l.data(), cand_rank.data());
    search.Assign(w.data(), cand_p2l.data(), cand_rank.data());
    if (search.Balancedness() < target) {
      std::copy(&fresh_p2l[base], &fresh_p2l[base] + slots, cand_p2l.begin());
      std::copy(&fresh_rank[base], &fresh_rank[base] + slots, cand_rank.begin());
    }
    int moved = ChangedSlots(cand_p2l.data(), &prev_p2l[base], slots);
    // Incremental plan from the previous one, if it meets the target with
    // fewer changes.
    search.Assign(w.data(), &prev_p2l[base], &prev_rank[base]);
    if (target > 0) {
      const double mean = std::accumulate(w.begin(), w.end(), 0.0) / num_gpus;
      search_options.stop_at = mean / target * (1 - 1e-12);
      search_options.max_moves = moved;  // more cannot beat the aligned plan
      search.Search(search_options);
    }
    const int incremental_moved = search.ChangedSlots(&prev_p2l[base]);
    if (search.Balancedness() >= target && incremental_moved <= moved) {
      search.Store(cand_p2l.data(), cand_rank.data());
      moved = incremental_moved;
    }
    std::copy(cand_p2l.begin(), cand_p2l.end(), &out_p2l[base]);
    std::copy(cand_rank.begin(), cand_rank.end(), &out_rank[base]);
    plan.moved_per_layer.push_back(moved);
    plan.moved_replicas += moved;
  }
  if (options.expert_bytes > 0 && plan.moved_replicas > std::numeric_limits<int64_t>::max() / options.expert_bytes) {
    return absl::OutOfRangeError(absl::StrCat("expert_bytes: ", plan.moved_replicas, " moved replicas x ",
                                              options.expert_bytes, " bytes overflows int64"));
  }
  plan.moved_bytes = plan.moved_replicas * options.expert_bytes;
  TANDEM_ASSIGN_OR_RETURN(
      plan.placement,
      MakePlacement(layers, experts, slots, std::vector<int64_t>(out_p2l.begin(), out_p2l.end()), out_rank));
  TANDEM_ASSIGN_OR_RETURN(plan.metrics, ComputeMetrics(weights, plan.placement, num_gpus));
  return plan;
}

}  // namespace tandem::balance
