#include "balance/internal/packing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace tandem::balance::internal {
namespace {

// Packs up to this many are scanned linearly; more use a heap.
constexpr int kLinearScanPacks = 24;

// Places `item` into `p` as its next arrival.
void Place(int32_t item, int32_t p, float key, int32_t* pack, int32_t* rank,
           PackingScratch* s) {
  pack[item] = p;
  rank[item] = s->count[p]++;
  s->load[p] += key;
}

void PackUnconstrained(absl::Span<const float> keys, int num_packs, int k,
                       int32_t* pack, int32_t* rank, PackingScratch* s) {
  if (num_packs <= kLinearScanPacks) {
    for (const int32_t item : s->order) {
      int32_t best = -1;
      for (int32_t p = 0; p < num_packs; ++p) {
        if (s->count[p] < k && (best < 0 || s->load[p] < s->load[best])) {
          best = p;
        }
      }
      Place(item, best, keys[item], pack, rank, s);
    }
    return;
  }
  // Min-heap on (load, pack): the least-loaded pack, lowest index first.
  auto& heap = s->heap;
  heap.clear();
  for (int32_t p = 0; p < num_packs; ++p) heap.emplace_back(0.0f, p);
  const auto later = std::greater<std::pair<float, int32_t>>();
  for (const int32_t item : s->order) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const int32_t p = heap.back().second;
    heap.pop_back();
    Place(item, p, keys[item], pack, rank, s);
    if (s->count[p] < k) {
      heap.emplace_back(s->load[p], p);
      std::push_heap(heap.begin(), heap.end(), later);
    }
  }
}

// Frees a slot for `item` when every pack with room already holds its owner:
// moves some placed item y from a full pack q lacking the owner to a pack
// with room lacking y's owner, and puts `item` where y was. Picks the move
// with the smallest resulting larger load of the two packs.
bool PlaceByMove(int32_t item, absl::Span<const float> keys,
                 absl::Span<const int32_t> owner, int num_packs, int k,
                 int32_t num_owners, std::vector<char>& holds,
                 const std::vector<int32_t>& placed, int32_t* pack,
                 int32_t* rank, PackingScratch* s) {
  const int32_t o = owner[item];
  int32_t best_y = -1;
  int32_t best_to = -1;
  float best_cost = 0.0f;
  for (const int32_t y : placed) {
    const int32_t q = pack[y];
    if (s->count[q] < k || holds[q * num_owners + o]) continue;
    for (int32_t to = 0; to < num_packs; ++to) {
      if (s->count[to] >= k || holds[to * num_owners + owner[y]]) continue;
      const float cost = std::max(s->load[q] - keys[y] + keys[item],
                                  s->load[to] + keys[y]);
      if (best_y < 0 || cost < best_cost) {
        best_y = y;
        best_to = to;
        best_cost = cost;
      }
    }
  }
  if (best_y < 0) return false;
  const int32_t q = pack[best_y];
  const int32_t q_rank = rank[best_y];
  holds[q * num_owners + owner[best_y]] = 0;
  s->load[q] -= keys[best_y];
  s->count[q]--;
  Place(best_y, best_to, keys[best_y], pack, rank, s);
  holds[best_to * num_owners + owner[best_y]] = 1;
  pack[item] = q;
  rank[item] = q_rank;
  s->count[q]++;
  s->load[q] += keys[item];
  holds[q * num_owners + o] = 1;
  return true;
}

bool PackWithoutDuplicates(absl::Span<const float> keys,
                           absl::Span<const int32_t> owner, int num_packs,
                           int k, int32_t* pack, int32_t* rank,
                           PackingScratch* s) {
  int32_t num_owners = 0;
  for (const int32_t o : owner) num_owners = std::max(num_owners, o + 1);
  std::vector<char> holds(static_cast<size_t>(num_packs) * num_owners, 0);
  std::vector<int32_t> placed;
  placed.reserve(keys.size());
  for (const int32_t item : s->order) {
    const int32_t o = owner[item];
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (s->count[p] < k && !holds[p * num_owners + o] &&
          (best < 0 || s->load[p] < s->load[best])) {
        best = p;
      }
    }
    if (best >= 0) {
      Place(item, best, keys[item], pack, rank, s);
      holds[best * num_owners + o] = 1;
    } else if (!PlaceByMove(item, keys, owner, num_packs, k, num_owners,
                            holds, placed, pack, rank, s)) {
      return false;  // only when an owner has more items than packs
    }
    placed.push_back(item);
  }
  return true;
}

}  // namespace

void SortDescending(absl::Span<const float> keys, TieOrder tie,
                    PackingScratch* scratch) {
  std::vector<std::pair<float, int32_t>>& pairs = scratch->heap;
  pairs.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    pairs[i] = {keys[i], static_cast<int32_t>(i)};
  }
  if (tie == TieOrder::kReference) {
    // torch 1.13's KeyValueCompDesc: NaN first, then larger keys; equal keys
    // end up wherever libstdc++'s introsort leaves them.
    std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
      return (std::isnan(a.first) && !std::isnan(b.first)) ||
             a.first > b.first;
    });
  } else {
    std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
  }
  scratch->order.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    scratch->order[i] = pairs[i].second;
  }
}

bool BalancedPacking(absl::Span<const float> keys, int num_packs, TieOrder tie,
                     absl::Span<const int32_t> owner, int32_t* pack,
                     int32_t* rank, PackingScratch* scratch) {
  const int n = static_cast<int>(keys.size());
  const int k = n / num_packs;
  if (k == 1) {
    for (int i = 0; i < n; ++i) {
      pack[i] = i;
      rank[i] = 0;
    }
    return true;
  }
  SortDescending(keys, tie, scratch);
  scratch->load.assign(num_packs, 0.0f);
  scratch->count.assign(num_packs, 0);
  if (owner.empty()) {
    PackUnconstrained(keys, num_packs, k, pack, rank, scratch);
    return true;
  }
  return PackWithoutDuplicates(keys, owner, num_packs, k, pack, rank, scratch);
}

void ReplicateExperts(absl::Span<const float> w, int num_slots, int max_count,
                      int32_t* slot_expert, int32_t* slot_rank, int32_t* count,
                      PackingScratch* scratch) {
  const int n = static_cast<int>(w.size());
  for (int e = 0; e < n; ++e) {
    slot_expert[e] = e;
    slot_rank[e] = 0;
    count[e] = 1;
  }
  auto open = [&](int e) { return max_count <= 0 || count[e] < max_count; };
  auto per_replica = [&](int e) { return w[e] / static_cast<float>(count[e]); };
  const int extra = num_slots - n;
  if (static_cast<int64_t>(extra) * n <= 4096) {
    for (int s = n; s < num_slots; ++s) {
      int best = -1;
      float best_value = 0.0f;
      for (int e = 0; e < n; ++e) {
        if (!open(e)) continue;
        const float v = per_replica(e);
        if (best < 0 || v > best_value) {
          best = e;
          best_value = v;
        }
      }
      slot_expert[s] = best;
      slot_rank[s] = count[best]++;
    }
    return;
  }
  // Max-heap on (per-replica load, -expert): the largest, lowest index first.
  auto& heap = scratch->heap;
  heap.clear();
  const auto before = [](const std::pair<float, int32_t>& a,
                         const std::pair<float, int32_t>& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  };
  for (int e = 0; e < n; ++e) {
    if (open(e)) heap.emplace_back(per_replica(e), e);
  }
  std::make_heap(heap.begin(), heap.end(), before);
  for (int s = n; s < num_slots; ++s) {
    std::pop_heap(heap.begin(), heap.end(), before);
    const int32_t e = heap.back().second;
    heap.pop_back();
    slot_expert[s] = e;
    slot_rank[s] = count[e]++;
    if (open(e)) {
      heap.emplace_back(per_replica(e), e);
      std::push_heap(heap.begin(), heap.end(), before);
    }
  }
}

}  // namespace tandem::balance::internal
