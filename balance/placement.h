// -----------------------------------------------------------------------------
// File: placement.h
// -----------------------------------------------------------------------------
//
// The data of expert load balancing: `Weights`, a view of per-layer expert
// loads, and `Placement`, which physical slot holds which expert, in the
// EPLB reference's three arrays. Solvers live in eplb.h and migration.h,
// quality metrics in metrics.h.
//
// Conventions (as in the reference): slot p of a layer lives on GPU
// p / (num_replicas / num_gpus). log2phy lists each expert's slots by replica
// rank, padded with -1 to the largest replica count over all layers.

#ifndef TANDEM_BALANCE_PLACEMENT_H_
#define TANDEM_BALANCE_PLACEMENT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tandem::balance {

// Weights
//
// A non-owning, row-major [num_layers x num_experts] matrix of loads, as
// int64 token counts or float32 values. The data must outlive the view.
class Weights {
 public:
  enum class Type { kInt64, kFloat32 };

  static Weights Int64(absl::Span<const int64_t> data, int num_layers, int num_experts) {
    return Weights(Type::kInt64, data.data(), nullptr, data.size(), num_layers, num_experts);
  }
  static Weights Float32(absl::Span<const float> data, int num_layers, int num_experts) {
    return Weights(Type::kFloat32, nullptr, data.data(), data.size(), num_layers, num_experts);
  }

  Type type() const { return type_; }
  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }

  // Weights::Validate()
  //
  // kInvalidArgument unless there is at least one layer and one expert, the
  // data has num_layers * num_experts values, and every load is finite and
  // >= 0. The message names the bad value, e.g.
  // "weights[1][3]: expected a finite load >= 0, got -5".
  absl::Status Validate() const;

  // Load of flat index i (layer * num_experts + expert): cast to float32 as
  // the reference does, or as a double (exact for integers up to 2^53).
  float AsFloat32(int64_t i) const { return type_ == Type::kInt64 ? static_cast<float>(int64_[i]) : float32_[i]; }
  double AsDouble(int64_t i) const {
    return type_ == Type::kInt64 ? static_cast<double>(int64_[i]) : static_cast<double>(float32_[i]);
  }

 private:
  Weights(Type type, const int64_t* i, const float* f, size_t size, int num_layers, int num_experts)
      : type_(type), int64_(i), float32_(f), size_(size), num_layers_(num_layers), num_experts_(num_experts) {}

  Type type_;
  const int64_t* int64_;
  const float* float32_;
  size_t size_;
  int num_layers_;
  int num_experts_;
};

// Placement
//
// Where each expert's replicas live, per layer; all arrays flat row-major.
struct Placement {
  int num_layers = 0;
  int num_experts = 0;
  int num_replicas = 0;  // physical slots per layer
  int max_count = 0;     // width of log2phy: the largest logcnt entry

  std::vector<int64_t> phy2log;  // [layers][replicas]: expert in each slot
  std::vector<int64_t> log2phy;  // [layers][experts][max_count], -1 padded
  std::vector<int64_t> logcnt;   // [layers][experts]: replica counts

  int64_t expert_of(int layer, int slot) const { return phy2log[static_cast<int64_t>(layer) * num_replicas + slot]; }
  int64_t count_of(int layer, int expert) const { return logcnt[static_cast<int64_t>(layer) * num_experts + expert]; }
};

// MakePlacement()
//
// Builds a Placement from phy2log [layers][replicas] and each slot's replica
// rank (0 .. count-1 per expert, the order log2phy lists the slots in).
// kInvalidArgument if an id is out of range, an expert has no replica, or
// the ranks of an expert are not 0 .. count-1; kResourceExhausted if log2phy
// would exceed 2^28 entries.
absl::StatusOr<Placement> MakePlacement(int num_layers, int num_experts, int num_replicas, std::vector<int64_t> phy2log,
                                        absl::Span<const int32_t> rank);

// PlacementFromPhy2Log()
//
// As MakePlacement(), ranking each expert's slots in ascending slot order.
absl::StatusOr<Placement> PlacementFromPhy2Log(int num_layers, int num_experts, int num_replicas,
                                               absl::Span<const int64_t> phy2log);

// ValidatePlacement()
//
// OK if `p` is a consistent placement for `num_gpus` GPUs: array sizes match
// the shape, num_replicas is a multiple of num_gpus, every expert has at
// least one replica, logcnt counts phy2log, and log2phy lists exactly each
// expert's slots (each once, then -1 padding) with max_count the largest
// count. Otherwise kInvalidArgument naming the first bad entry, e.g.
// "log2phy[0][3][1]: expected a slot holding expert 3, got 7".
absl::Status ValidatePlacement(const Placement& p, int num_gpus);

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_PLACEMENT_H_
