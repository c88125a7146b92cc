#include "balance/internal/speed_packing.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace tandem::balance::internal {
namespace {

struct Item {
  int32_t expert;
  int32_t rank;
  double load;
};

// Replica counts of each expert in a plan.
std::vector<int> Counts(const Shape& shape, const int32_t* phy2log) {
  std::vector<int> count(shape.num_experts, 0);
  for (int s = 0; s < shape.num_replicas; ++s) ++count[phy2log[s]];
  return count;
}

}  // namespace

double SpeedScaledMax(const double* w, const Shape& shape, const double* speed, const int32_t* phy2log) {
  const std::vector<int> count = Counts(shape, phy2log);
  const int per_gpu = shape.slots_per_gpu();
  double worst = 0;
  for (int g = 0; g < shape.num_gpus; ++g) {
    double load = 0;
    for (int s = g * per_gpu; s < (g + 1) * per_gpu; ++s) load += w[phy2log[s]] / count[phy2log[s]];
    worst = std::max(worst, load / speed[g]);
  }
  return worst;
}

bool RepackForSpeed(const double* w, const Shape& shape, const double* speed, bool no_duplicates, int32_t* phy2log,
                    int32_t* rank) {
  const std::vector<int> original = Counts(shape, phy2log);
  std::vector<int> count = original;
  const int per_gpu = shape.slots_per_gpu(), gpus = shape.gpus_per_node(), slots = shape.slots_per_node();
  // Recounts need every replica of an expert on one node (the reference's
  // plans; not cross-node refined ones).
  std::vector<int> node_of(shape.num_experts, -1);
  bool recount = true;
  for (int sl = 0; sl < shape.num_replicas; ++sl) {
    const int node = sl / slots, e = phy2log[sl];
    if (node_of[e] >= 0 && node_of[e] != node) recount = false;
    node_of[e] = node;
  }
  std::vector<int32_t> out_p2l(phy2log, phy2log + shape.num_replicas), out_rank(rank, rank + shape.num_replicas);
  for (int node = 0; node < shape.num_nodes; ++node) {
    const int first_gpu = node * gpus, first_slot = node * slots;
    auto item = [&](int e) { return w[e] / count[e]; };
    // Greedy start: heaviest replica first (ties by expert, then replica
    // rank: deterministic) onto the GPU finishing it earliest.
    std::vector<Item> items;
    for (int sl = first_slot; sl < first_slot + slots; ++sl)
      items.push_back({phy2log[sl], rank[sl], item(phy2log[sl])});
    std::vector<int> order(items.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      if (items[a].load != items[b].load) return items[a].load > items[b].load;
      return items[a].expert != items[b].expert ? items[a].expert < items[b].expert : items[a].rank < items[b].rank;
    });
    std::vector<std::vector<int32_t>> on(gpus);  // experts in each GPU's slots
    std::vector<double> load(gpus, 0.0);
    auto holds = [&](int g, int32_t e) { return std::find(on[g].begin(), on[g].end(), e) != on[g].end(); };
    for (int i : order) {
      int best = -1;
      double best_time = 0;
      for (int g = 0; g < gpus; ++g) {
        if (static_cast<int>(on[g].size()) == per_gpu || (no_duplicates && holds(g, items[i].expert))) continue;
        const double t = (load[g] + items[i].load) / speed[first_gpu + g];
        if (best < 0 || t < best_time) {
          best = g;
          best_time = t;
        }
      }
      if (best < 0) return false;
      on[best].push_back(items[i].expert);
      load[best] += items[i].load;
    }
    std::vector<int32_t> experts;  // of this node
    for (const Item& it : items) experts.push_back(it.expert);
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    auto recompute = [&] {
      for (int g = 0; g < gpus; ++g) {
        load[g] = 0;
        for (int32_t e : on[g]) load[g] += item(e);
      }
    };
    auto time = [&](int g, double l) { return l / speed[first_gpu + g]; };
    // Moves at the GPU finishing last while one lowers every GPU it touches
    // below it: swaps of two replicas, and recounts (a replica of an expert
    // with several becomes one more replica of another).
    for (int moves = 0; moves < 64 * slots; ++moves) {
      int top = 0;
      for (int g = 1; g < gpus; ++g) {
        if (time(g, load[g]) > time(top, load[top])) top = g;
      }
      const double current = time(top, load[top]);
      double best_worst = current;
      int kind = 0, best_a = -1, best_h = -1, best_b = -1;
      for (int a = 0; a < per_gpu; ++a) {
        const int32_t ea = on[top][a];
        for (int h = 0; h < gpus; ++h) {
          if (h == top) continue;
          for (int b = 0; b < per_gpu; ++b) {
            const int32_t eb = on[h][b];
            if (item(eb) >= item(ea)) continue;
            if (no_duplicates && ea != eb && (holds(top, eb) || holds(h, ea))) continue;
            const double worst =
                std::max(time(top, load[top] - item(ea) + item(eb)), time(h, load[h] - item(eb) + item(ea)));
            if (worst < best_worst) {
              best_worst = worst;
              kind = 1;
              best_a = a;
              best_h = h;
              best_b = b;
            }
          }
        }
        if (!recount || count[ea] < 2) continue;
        const double a_old = w[ea] / count[ea], a_new = w[ea] / (count[ea] - 1);
        for (int32_t eb : experts) {
          if (eb == ea || (no_duplicates && holds(top, eb))) continue;
          const double b_old = w[eb] / count[eb], b_new = w[eb] / (count[eb] + 1);
          double worst = 0;
          for (int g = 0; g < gpus && worst < best_worst; ++g) {
            int na = 0, nb = 0;
            for (int32_t e : on[g]) {
              na += e == ea;
              nb += e == eb;
            }
            const int na_after = na - (g == top), nb_after = nb + (g == top);
            const double l = load[g] - na * a_old + na_after * a_new - nb * b_old + nb_after * b_new;
            worst = std::max(worst, time(g, l));
          }
          if (worst < best_worst) {
            best_worst = worst;
            kind = 2;
            best_a = a;
            best_b = eb;
          }
        }
      }
      if (kind == 0) break;
      if (kind == 1) {
        std::swap(on[top][best_a], on[best_h][best_b]);
      } else {
        --count[on[top][best_a]];
        ++count[best_b];
        on[top][best_a] = best_b;
      }
      recompute();
    }
    // Keep the node as it was unless this lowers its last finishing time.
    double before = 0, after = 0;
    for (int g = 0; g < gpus; ++g) {
      double l = 0;
      for (int k = 0; k < per_gpu; ++k) {
        const int32_t e = phy2log[first_slot + g * per_gpu + k];
        l += w[e] / original[e];
      }
      before = std::max(before, time(g, l));
      after = std::max(after, time(g, load[g]));
    }
    if (after < before) {
      for (int g = 0; g < gpus; ++g) {
        for (int k = 0; k < per_gpu; ++k) out_p2l[first_slot + g * per_gpu + k] = on[g][k];
      }
    } else {
      for (int32_t e : experts) count[e] = original[e];
    }
  }
  std::vector<int32_t> next(shape.num_experts, 0);
  for (int sl = 0; sl < shape.num_replicas; ++sl) out_rank[sl] = next[out_p2l[sl]]++;
  std::copy(out_p2l.begin(), out_p2l.end(), phy2log);
  std::copy(out_rank.begin(), out_rank.end(), rank);
  return true;
}

}  // namespace tandem::balance::internal
