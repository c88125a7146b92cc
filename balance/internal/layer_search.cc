#include "balance/internal/layer_search.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace tandem::balance::internal {
namespace {

// A move must bring the GPUs it touches below the current maximum by more
// than rounding noise.
constexpr double kMinGain = 1e-12;

// Donors and receivers tried per recount step.
constexpr int kRecountCandidates = 8;

}  // namespace

void LayerSearch::Assign(const double* w, const int32_t* phy2log, const int32_t* rank) {
  w_ = w;
  const int slots = shape_.num_replicas;
  const int experts = shape_.num_experts;
  expert_.assign(phy2log, phy2log + slots);
  rank_.assign(rank, rank + slots);
  count_.assign(experts, 0);
  node_.assign(experts, 0);
  slots_of_.resize(experts);
  for (auto& list : slots_of_) list.clear();
  for (int s = 0; s < slots; ++s) {
    const int e = expert_[s];
    ++count_[e];
    slots_of_[e].push_back(s);
    if (rank_[s] == 0) node_[e] = NodeOf(GpuOf(s));
  }
  item_.resize(slots);
  for (int s = 0; s < slots; ++s) item_[s] = Item(expert_[s], count_[expert_[s]]);
  load_.assign(shape_.num_gpus, 0.0);
  for (int g = 0; g < shape_.num_gpus; ++g) RecomputeGpu(g);
}

void LayerSearch::RecomputeGpu(int g) {
  double sum = 0.0;
  for (int s = g * per_gpu_; s < (g + 1) * per_gpu_; ++s) sum += item_[s];
  load_[g] = sum;
}

bool LayerSearch::Holds(int gpu, int expert, int except_slot) const {
  for (const int s : slots_of_[expert]) {
    if (s != except_slot && GpuOf(s) == gpu) return true;
  }
  return false;
}

bool LayerSearch::CanSwap(int s, int t, const SearchOptions& o) const {
  const int e = expert_[s];
  const int f = expert_[t];
  if (e == f) return false;
  const int g = GpuOf(s);
  const int h = GpuOf(t);
  if (NodeOf(g) != NodeOf(h)) {
    if (o.pin == Pin::kNode) return false;
    if (o.pin == Pin::kHome && (rank_[s] == 0 || rank_[t] == 0)) return false;
  }
  return !o.no_duplicates || (!Holds(h, e, t) && !Holds(g, f, s));
}

bool LayerSearch::CanPlace(int e, int t, const SearchOptions& o) const {
  const int f = expert_[t];
  if (f == e || count_[f] < 2) return false;
  if (o.pin == Pin::kNode && node_[e] != NodeOf(GpuOf(t))) return false;
  if (o.pin == Pin::kHome && rank_[t] == 0) return false;
  return !o.no_duplicates || !Holds(GpuOf(t), e, -1);
}

double LayerSearch::Score(double top, double worst, int changes, const SearchOptions& o) const {
  if (!o.per_change) return -worst;
  return std::min(top - worst, top - o.stop_at) / changes;
}

void LayerSearch::BestSwap(int g, const SearchOptions& o, Move* best) {
  const double top = load_[g];
  const double limit = top * (1 - kMinGain);
  // Lightest GPUs first: a swap with h leaves at least (top + load_h) / 2,
  // so once that cannot beat the best found, no heavier h can either.
  by_load_.clear();
  for (int h = 0; h < shape_.num_gpus; ++h) {
    if (h == g || load_[h] >= limit) continue;
    if (o.pin == Pin::kNode && NodeOf(h) != NodeOf(g)) continue;
    by_load_.push_back(h);
  }
  std::sort(by_load_.begin(), by_load_.end(),
            [&](int a, int b) { return load_[a] < load_[b] || (load_[a] == load_[b] && a < b); });
  for (const int h : by_load_) {
    if (best->s >= 0 && Score(top, (top + load_[h]) / 2, 2, o) <= best->score) {
      break;
    }
    // Rank-0 replicas pinned to their node cannot cross to h's.
    const bool pinned = o.pin == Pin::kHome && NodeOf(h) != NodeOf(g);
    for (int s = g * per_gpu_; s < (g + 1) * per_gpu_; ++s) {
      if (pinned && rank_[s] == 0) continue;
      for (int t = h * per_gpu_; t < (h + 1) * per_gpu_; ++t) {
        const double delta = item_[s] - item_[t];
        if (delta <= 0 || (pinned && rank_[t] == 0)) continue;
        const double worst = std::max(top - delta, load_[h] + delta);
        if (worst >= limit) continue;
        const double score = Score(top, worst, 2, o);
        if ((best->s < 0 || score > best->score) && CanSwap(s, t, o)) {
          *best = Move{s, t, -1, worst, score};
        }
      }
    }
  }
}

double LayerSearch::RecountWorst(int t, int e, int g) {
  const int f = expert_[t];
  const double e_delta = Item(e, count_[e] + 1) - Item(e, count_[e]);
  const double f_delta = Item(f, count_[f] - 1) - Item(f, count_[f]);
  touched_.clear();
  auto touch = [&](int gpu, double delta) {
    for (auto& [seen, sum] : touched_) {
      if (seen == gpu) {
        sum += delta;
        return;
      }
    }
    touched_.emplace_back(gpu, delta);
  };
  for (const int s : slots_of_[e]) touch(GpuOf(s), e_delta);
  for (const int s : slots_of_[f]) {
    if (s != t) touch(GpuOf(s), f_delta);
  }
  touch(GpuOf(t), Item(e, count_[e] + 1) - item_[t]);
  double worst = -1.0;
  bool touches_g = false;
  for (const auto& [gpu, delta] : touched_) {
    worst = std::max(worst, load_[gpu] + delta);
    touches_g = touches_g || gpu == g;
  }
  return touches_g ? worst : -1.0;
}

void LayerSearch::BestRecount(int g, const SearchOptions& o, Move* best) {
  const double top = load_[g];
  const double limit = top * (1 - kMinGain);
  const bool same_node = o.pin == Pin::kNode;
  auto try_move = [&](int t, int e) {
    if (!CanPlace(e, t, o)) return;
    const double worst = RecountWorst(t, e, g);
    if (worst < 0 || worst >= limit) return;
    const double score = Score(top, worst, 1, o);
    if (best->s < 0 || score > best->score) *best = Move{t, -1, e, worst, score};
  };
  // Keeps the kRecountCandidates experts smallest by `key` in candidates_.
  auto shortlist = [&](auto eligible, auto key) {
    candidates_.clear();
    for (int e = 0; e < shape_.num_experts; ++e) {
      if (eligible(e)) candidates_.push_back(e);
    }
    const auto by_key = [&](int a, int b) { return key(a) < key(b) || (key(a) == key(b) && a < b); };
    if (static_cast<int>(candidates_.size()) > kRecountCandidates) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + kRecountCandidates, candidates_.end(), by_key);
      candidates_.resize(kRecountCandidates);
    }
  };
  const auto in_reach = [&](int e) { return !same_node || node_[e] == NodeOf(g); };
  // (1) A replica more for an expert on GPU g, taken from the donors that
  // lose least per replica.
  shortlist([&](int f) { return count_[f] >= 2 && in_reach(f); },
            [&](int f) { return Item(f, count_[f] - 1) - Item(f, count_[f]); });
  const std::vector<int> donors = candidates_;
  for (int s = g * per_gpu_; s < (g + 1) * per_gpu_; ++s) {
    const int e = expert_[s];
    if (std::find(&expert_[g * per_gpu_], &expert_[s], e) != &expert_[s]) {
      continue;  // each receiver once
    }
    for (const int f : donors) {
      for (const int t : slots_of_[f]) try_move(t, e);
    }
  }
  // (2) A slot of GPU g handed to an expert whose replicas are light.
  shortlist([&](int e) { return in_reach(e); }, [&](int e) { return Item(e, count_[e] + 1); });
  for (int t = g * per_gpu_; t < (g + 1) * per_gpu_; ++t) {
    for (const int e : candidates_) try_move(t, e);
  }
}

void LayerSearch::ApplySwap(int s, int t) {
  auto relink = [&](int e, int from, int to) { std::replace(slots_of_[e].begin(), slots_of_[e].end(), from, to); };
  relink(expert_[s], s, t);
  relink(expert_[t], t, s);
  std::swap(expert_[s], expert_[t]);
  std::swap(rank_[s], rank_[t]);
  std::swap(item_[s], item_[t]);
  RecomputeGpu(GpuOf(s));
  RecomputeGpu(GpuOf(t));
}

void LayerSearch::ApplyRecount(int t, int e) {
  const int f = expert_[t];
  const int removed_rank = rank_[t];
  auto& donor = slots_of_[f];
  donor.erase(std::find(donor.begin(), donor.end(), t));
  for (const int s : donor) {
    if (rank_[s] > removed_rank) --rank_[s];
    if (rank_[s] == 0) node_[f] = NodeOf(GpuOf(s));
  }
  --count_[f];
  expert_[t] = e;
  rank_[t] = count_[e]++;
  slots_of_[e].push_back(t);
  for (const int x : {e, f}) {
    for (const int s : slots_of_[x]) item_[s] = Item(x, count_[x]);
  }
  for (const int x : {e, f}) {
    for (const int s : slots_of_[x]) RecomputeGpu(GpuOf(s));
  }
}

int LayerSearch::Search(const SearchOptions& o) {
  int moves = 0;
  while (moves < o.max_moves) {
    const int g = static_cast<int>(std::max_element(load_.begin(), load_.end()) - load_.begin());
    if (load_[g] <= o.stop_at) break;
    Move best;
    BestSwap(g, o, &best);
    if (o.recount && (o.per_change || best.s < 0)) BestRecount(g, o, &best);
    if (best.s < 0) break;
    if (best.t >= 0) {
      ApplySwap(best.s, best.t);
    } else {
      ApplyRecount(best.s, best.expert);
    }
    ++moves;
  }
  return moves;
}

double LayerSearch::ExactGpuLoad(int g) const {
  double sum = 0.0;
  for (int s = g * per_gpu_; s < (g + 1) * per_gpu_; ++s) {
    sum += w_[expert_[s]] / static_cast<double>(count_[expert_[s]]);
  }
  return sum;
}

double LayerSearch::MaxGpuLoad() const {
  double max = 0.0;
  for (int g = 0; g < shape_.num_gpus; ++g) max = std::max(max, ExactGpuLoad(g));
  return max;
}

double LayerSearch::Balancedness() const {
  double total = 0.0;
  double max = 0.0;
  for (int g = 0; g < shape_.num_gpus; ++g) {
    const double load = ExactGpuLoad(g);
    total += load;
    max = std::max(max, load);
  }
  return max > 0 ? total / shape_.num_gpus / max : 1.0;
}

int LayerSearch::ChangedSlots(const int32_t* phy2log) const {
  int changed = 0;
  for (int s = 0; s < shape_.num_replicas; ++s) changed += expert_[s] != phy2log[s];
  return changed;
}

void LayerSearch::Store(int32_t* phy2log, int32_t* rank) const {
  std::copy(expert_.begin(), expert_.end(), phy2log);
  std::copy(rank_.begin(), rank_.end(), rank);
}

}  // namespace tandem::balance::internal
