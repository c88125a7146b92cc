#include "balance/internal/packing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

namespace tandem::balance::internal {
namespace {

// Up to this many packs are kept in a sorted list; more use a tournament.
constexpr int kSortedListPacks = 16;

// A tournament tree over keys[0..n): Best() is the index whose key wins
// under `Better` (a strict order on floats), the lowest index among equals,
// as a left-to-right scan would find. Update(i) after keys[i] changed;
// Remove(i) takes i out of the contest.
template <typename Better>
class Tournament {
 public:
  void Build(const float* keys, int n) {
    keys_ = keys;
    leaves_ = 1;
    while (leaves_ < n) leaves_ *= 2;
    node_.assign(2 * static_cast<size_t>(leaves_), -1);
    for (int i = 0; i < n; ++i) node_[leaves_ + i] = i;
    for (int j = leaves_ - 1; j >= 1; --j) node_[j] = Winner(j);
  }
  int Best() const { return node_[1]; }
  void Update(int i) {
    for (int j = (leaves_ + i) / 2; j >= 1; j /= 2) node_[j] = Winner(j);
  }
  void Remove(int i) {
    node_[leaves_ + i] = -1;
    Update(i);
  }

 private:
  // The left child holds the lower indices, so it wins ties.
  int Winner(int j) const {
    const int a = node_[2 * j];
    const int b = node_[2 * j + 1];
    if (a < 0 || b < 0) return a < 0 ? b : a;
    return Better()(keys_[b], keys_[a]) ? b : a;
  }

  const float* keys_ = nullptr;
  int leaves_ = 1;
  std::vector<int32_t> node_;
};

// The lowest index of the largest of x[0..n), n >= 1, no NaN. Four
// independent running maxima, then a scan for the first equal value.
int FirstMax(const float* x, int n) {
  float m[4] = {x[0], x[0], x[0], x[0]};
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  }
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  const float max = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  int first = 0;
  while (x[first] != max) ++first;
  return first;
}

// Places `item` into `p` as its next arrival.
void Place(int32_t item, int32_t p, float key, int32_t* pack, int32_t* rank, PackingScratch* s) {
  pack[item] = p;
  rank[item] = s->count[p]++;
  s->load[p] += key;
}

void PackUnconstrained(absl::Span<const float> keys, int num_packs, int k, int32_t* pack, int32_t* rank,
                       PackingScratch* s) {
  if (num_packs <= kSortedListPacks) {
    // Packs with room, sorted by (load, index): the front is the pack to
    // fill. After it takes an item it moves back past the packs that now
    // come before it, or leaves when full.
    std::vector<int32_t>& open = s->open;
    open.resize(num_packs);
    for (int32_t p = 0; p < num_packs; ++p) open[p] = p;
    size_t begin = 0;
    for (const int32_t item : s->order) {
      const int32_t best = open[begin];
      Place(item, best, keys[item], pack, rank, s);
      if (s->count[best] == k) {
        ++begin;
        continue;
      }
      const float load = s->load[best];
      size_t i = begin;
      for (; i + 1 < open.size(); ++i) {
        const int32_t next = open[i + 1];
        const float next_load = s->load[next];
        if (next_load > load || (next_load == load && next > best)) break;
        open[i] = next;
      }
      open[i] = best;
    }
    return;
  }
  // The least-loaded pack with room, lowest index first.
  Tournament<std::less<float>> least;
  least.Build(s->load.data(), num_packs);
  for (const int32_t item : s->order) {
    const int32_t p = least.Best();
    Place(item, p, keys[item], pack, rank, s);
    if (s->count[p] == k) {
      least.Remove(p);
    } else {
      least.Update(p);
    }
  }
}

// Frees a slot for `item` when every pack with room already holds its owner:
// moves some placed item y from a full pack q lacking the owner to a pack
// with room lacking y's owner, and puts `item` where y was. Picks the move
// with the smallest resulting larger load of the two packs.
bool PlaceByMove(int32_t item, absl::Span<const float> keys, absl::Span<const int32_t> owner, int num_packs, int k,
                 int32_t num_owners, std::vector<char>& holds, const std::vector<int32_t>& placed, int32_t* pack,
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
      const float cost = std::max(s->load[q] - keys[y] + keys[item], s->load[to] + keys[y]);
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

bool PackWithoutDuplicates(absl::Span<const float> keys, absl::Span<const int32_t> owner, int num_packs, int k,
                           int32_t* pack, int32_t* rank, PackingScratch* s) {
  int32_t num_owners = 0;
  for (const int32_t o : owner) num_owners = std::max(num_owners, o + 1);
  std::vector<char> holds(static_cast<size_t>(num_packs) * num_owners, 0);
  std::vector<int32_t> placed;
  placed.reserve(keys.size());
  for (const int32_t item : s->order) {
    const int32_t o = owner[item];
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (s->count[p] < k && !holds[p * num_owners + o] && (best < 0 || s->load[p] < s->load[best])) {
        best = p;
      }
    }
    if (best >= 0) {
      Place(item, best, keys[item], pack, rank, s);
      holds[best * num_owners + o] = 1;
    } else if (!PlaceByMove(item, keys, owner, num_packs, k, num_owners, holds, placed, pack, rank, s)) {
      return false;  // only when an owner has more items than packs
    }
    placed.push_back(item);
  }
  return true;
}

}  // namespace

void SortDescending(absl::Span<const float> keys, TieOrder tie, PackingScratch* scratch) {
  // Each entry is (order key << 32 | index), the order key a uint32 that
  // sorts like the float does, descending. Comparing whole entries orders
  // ties by index (stable); comparing the high halves alone answers exactly
  // as the reference's `a > b` on the floats, so libstdc++'s std::sort takes
  // the same steps as in torch and leaves ties in the same places.
  std::vector<uint64_t>& entries = scratch->entries;
  entries.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    uint32_t bits;
    const float key = keys[i] + 0.0f;  // -0 becomes +0, equal to it
    std::memcpy(&bits, &key, sizeof(bits));
    bits = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;  // ascending
    entries[i] = (static_cast<uint64_t>(~bits) << 32) | i;     // descending
  }
  if (tie == TieOrder::kReference) {
    std::sort(entries.begin(), entries.end(), [](uint64_t a, uint64_t b) { return (a >> 32) < (b >> 32); });
  } else {
    std::sort(entries.begin(), entries.end());
  }
  scratch->order.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    scratch->order[i] = static_cast<int32_t>(entries[i] & 0xffffffffu);
  }
}

bool BalancedPacking(absl::Span<const float> keys, int num_packs, TieOrder tie, absl::Span<const int32_t> owner,
                     int32_t* pack, int32_t* rank, PackingScratch* scratch) {
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

void ReplicateExperts(absl::Span<const float> w, int num_slots, int max_count, int32_t* slot_expert, int32_t* slot_rank,
                      int32_t* count, PackingScratch* scratch) {
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
    // Current load per replica; -inf for capped experts (loads are >= 0).
    std::vector<float>& value = scratch->load;
    value.resize(n);
    for (int e = 0; e < n; ++e) {
      value[e] = open(e) ? per_replica(e) : -HUGE_VALF;
    }
    for (int s = n; s < num_slots; ++s) {
      const int best = FirstMax(value.data(), n);
      slot_expert[s] = best;
      slot_rank[s] = count[best]++;
      value[best] = open(best) ? per_replica(best) : -HUGE_VALF;
    }
    return;
  }
  // The largest load per replica, lowest index first.
  std::vector<float>& value = scratch->load;
  value.resize(n);
  for (int e = 0; e < n; ++e) value[e] = per_replica(e);
  Tournament<std::greater<float>> largest;
  largest.Build(value.data(), n);
  for (int e = 0; e < n; ++e) {
    if (!open(e)) largest.Remove(e);
  }
  for (int s = n; s < num_slots; ++s) {
    const int32_t e = largest.Best();
    slot_expert[s] = e;
    slot_rank[s] = count[e]++;
    if (open(e)) {
      value[e] = per_replica(e);
      largest.Update(e);
    } else {
      largest.Remove(e);
    }
  }
}

}  // namespace tandem::balance::internal
