// -----------------------------------------------------------------------------
// File: packing.h
// -----------------------------------------------------------------------------
//
// The two greedy steps of the EPLB reference, on one row of float32 keys:
// balanced packing (descending sort, then each item to the least-loaded pack
// that still has room) and replication (each extra slot to the expert with
// the largest load per replica). Both reproduce the reference's float32
// arithmetic and tie-breaking; the sort's tie order is chosen by `TieOrder`.
// Optionally both respect "no two replicas of one expert in one pack".

#ifndef TANDEM_BALANCE_INTERNAL_PACKING_H_
#define TANDEM_BALANCE_INTERNAL_PACKING_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace tandem::balance::internal {

// How the descending sort orders equal keys.
enum class TieOrder {
  kStable,     // lower index first, on every platform
  kReference,  // libstdc++ std::sort over (key, index) pairs with the
               // reference's comparator `a > b` (torch 1.13 CPU sort)
};

// Reusable buffers, so that solving many rows allocates once.
struct PackingScratch {
  std::vector<uint64_t> entries;
  std::vector<int32_t> order;
  std::vector<int32_t> open;
  std::vector<float> load;
  std::vector<int32_t> count;
};

// SortDescending()
//
// Fills `scratch->order` with the indices of `keys` sorted by descending
// key, ties as `tie` says. Keys must not be NaN (callers validate loads).
void SortDescending(absl::Span<const float> keys, TieOrder tie, PackingScratch* scratch);

// BalancedPacking()
//
// Splits `keys.size()` items into `num_packs` packs of exactly
// n / num_packs items (n must be a multiple of num_packs). With one item per
// pack the result is the identity, as in the reference. Otherwise items are
// taken in descending key order and each goes to the pack with the smallest
// float32 load (sequential float32 sums), the lowest index among equals, of
// those with room. Writes each item's pack and its arrival rank in the pack.
//
// With `owner` non-empty (one id per item), no pack receives two items of one
// owner: an item goes to the least-loaded pack with room that lacks its
// owner; when none exists, an earlier item is moved to make room (always
// possible while no owner has more items than there are packs, which the
// caller must ensure). Returns false only when that constraint could not be
// met; the outputs are then unspecified.
bool BalancedPacking(absl::Span<const float> keys, int num_packs, TieOrder tie, absl::Span<const int32_t> owner,
                     int32_t* pack, int32_t* rank, PackingScratch* scratch);

// ReplicateExperts()
//
// Gives `num_slots - w.size()` extra replicas, one at a time, to the expert
// with the largest float32 `w[e] / count[e]` (lowest index among equals),
// skipping experts that already have `max_count` replicas (max_count <= 0:
// no cap). Slot e < w.size() holds expert e with rank 0; slot s beyond holds
// `slot_expert[s]` with rank `slot_rank[s]` (its creation order). The caller
// ensures w.size() * max_count >= num_slots when capped.
void ReplicateExperts(absl::Span<const float> w, int num_slots, int max_count, int32_t* slot_expert, int32_t* slot_rank,
                      int32_t* count, PackingScratch* scratch);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_PACKING_H_
