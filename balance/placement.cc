#include "balance/placement.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tandem::balance {
namespace {

// log2phy has layers x experts x (largest replica count) entries; refuse
// sizes that would take more than 2 GiB.
constexpr int64_t kMaxLog2PhyEntries = int64_t{1} << 28;

}  // namespace

absl::Status Weights::Validate() const {
  if (num_layers_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat("weights: expected at least one layer, got ", num_layers_));
  }
  if (num_experts_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat("weights: expected at least one expert, got ", num_experts_));
  }
  const int64_t expected = int64_t{num_layers_} * num_experts_;
  if (static_cast<int64_t>(size_) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("weights: expected ", expected, " values for ", num_layers_,
                                                   " layers x ", num_experts_, " experts, got ", size_));
  }
  for (int64_t i = 0; i < expected; ++i) {
    const double v = AsDouble(i);
    if (std::isfinite(v) && v >= 0) continue;
    return absl::InvalidArgumentError(absl::StrCat("weights[", i / num_experts_, "][", i % num_experts_,
                                                   "]: expected a finite load >= 0, got ",
                                                   type_ == Type::kInt64 ? absl::StrCat(int64_[i]) : absl::StrCat(v)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Placement> MakePlacement(int num_layers, int num_experts, int num_replicas, std::vector<int64_t> phy2log,
                                        absl::Span<const int32_t> rank) {
  const int64_t slots = int64_t{num_layers} * num_replicas;
  if (num_layers < 1 || num_experts < 1 || num_replicas < num_experts ||
      static_cast<int64_t>(phy2log.size()) != slots || static_cast<int64_t>(rank.size()) != slots) {
    return absl::InvalidArgumentError(absl::StrCat("placement: expected phy2log and ranks of ", num_layers, " x ",
                                                   num_replicas, " slots for ", num_experts, " experts, got ",
                                                   phy2log.size(), " and ", rank.size()));
  }
  Placement p;
  p.num_layers = num_layers;
  p.num_experts = num_experts;
  p.num_replicas = num_replicas;
  p.phy2log = std::move(phy2log);
  p.logcnt.assign(int64_t{num_layers} * num_experts, 0);
  for (int l = 0; l < num_layers; ++l) {
    const int64_t* row = &p.phy2log[int64_t{l} * num_replicas];
    int64_t* count = &p.logcnt[int64_t{l} * num_experts];
    for (int s = 0; s < num_replicas; ++s) {
      if (row[s] < 0 || row[s] >= num_experts) {
        return absl::InvalidArgumentError(
            absl::StrCat("phy2log[", l, "][", s, "]: expected an expert id in [0, ", num_experts, "), got ", row[s]));
      }
      ++count[row[s]];
    }
  }
  int64_t max_count = 0;
  for (int l = 0; l < num_layers; ++l) {
    for (int e = 0; e < num_experts; ++e) {
      const int64_t c = p.logcnt[int64_t{l} * num_experts + e];
      if (c == 0) {
        return absl::InvalidArgumentError(absl::StrCat("layer ", l, " expert ", e,
                                                       ": expected at least one replica, "
                                                       "got 0"));
      }
      max_count = std::max(max_count, c);
    }
  }
  if (static_cast<int64_t>(p.logcnt.size()) * max_count > kMaxLog2PhyEntries) {
    return absl::ResourceExhaustedError(absl::StrCat("log2phy: ", p.logcnt.size(), " experts x max count ", max_count,
                                                     " entries exceed the limit of ", kMaxLog2PhyEntries));
  }
  p.max_count = static_cast<int>(max_count);
  p.log2phy.assign(static_cast<size_t>(p.logcnt.size()) * max_count, -1);
  for (int l = 0; l < num_layers; ++l) {
    const int64_t* row = &p.phy2log[int64_t{l} * num_replicas];
    const int32_t* ranks = &rank[int64_t{l} * num_replicas];
    const int64_t* count = &p.logcnt[int64_t{l} * num_experts];
    int64_t* cells = &p.log2phy[int64_t{l} * num_experts * max_count];
    for (int s = 0; s < num_replicas; ++s) {
      const int64_t e = row[s];
      const int64_t r = ranks[s];
      if (r < 0 || r >= count[e] || cells[e * max_count + r] != -1) {
        return absl::InvalidArgumentError(absl::StrCat("rank of slot ", s, " in layer ", l,
                                                       ": expected a unique rank in [0, ", count[e], ") for expert ", e,
                                                       ", got ", r));
      }
      cells[e * max_count + r] = s;
    }
  }
  return p;
}

absl::StatusOr<Placement> PlacementFromPhy2Log(int num_layers, int num_experts, int num_replicas,
                                               absl::Span<const int64_t> phy2log) {
  std::vector<int32_t> rank(phy2log.size(), 0);
  if (num_layers >= 1 && num_replicas >= 1 && num_experts >= 1 &&
      static_cast<int64_t>(phy2log.size()) == int64_t{num_layers} * num_replicas) {
    std::vector<int32_t> seen(num_experts);
    for (int l = 0; l < num_layers; ++l) {
      std::fill(seen.begin(), seen.end(), 0);
      for (int s = 0; s < num_replicas; ++s) {
        const int64_t i = int64_t{l} * num_replicas + s;
        if (phy2log[i] >= 0 && phy2log[i] < num_experts) {
          rank[i] = seen[phy2log[i]]++;
        }
      }
    }
  }
  return MakePlacement(num_layers, num_experts, num_replicas, std::vector<int64_t>(phy2log.begin(), phy2log.end()),
                       rank);
}

absl::Status ValidatePlacement(const Placement& p, int num_gpus) {
  const int64_t layers = p.num_layers;
  if (p.num_layers < 1 || p.num_experts < 1 || p.num_replicas < 1) {
    return absl::InvalidArgumentError(absl::StrCat("placement: expected a positive shape, got ", p.num_layers,
                                                   " layers, ", p.num_experts, " experts, ", p.num_replicas,
                                                   " replicas"));
  }
  if (num_gpus < 1 || p.num_replicas % num_gpus != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_gpus: expected a positive divisor of num_replicas = ", p.num_replicas, ", got ", num_gpus));
  }
  if (static_cast<int64_t>(p.phy2log.size()) != layers * p.num_replicas ||
      static_cast<int64_t>(p.logcnt.size()) != layers * p.num_experts ||
      static_cast<int64_t>(p.log2phy.size()) != layers * p.num_experts * p.max_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement: expected arrays of ", layers * p.num_replicas, ", ", layers * p.num_experts * p.max_count, " and ",
        layers * p.num_experts, " entries, got ", p.phy2log.size(), ", ", p.log2phy.size(), " and ", p.logcnt.size()));
  }
  std::vector<int64_t> count(p.num_experts);
  int64_t max_count = 0;
  for (int l = 0; l < p.num_layers; ++l) {
    std::fill(count.begin(), count.end(), 0);
    for (int s = 0; s < p.num_replicas; ++s) {
      const int64_t e = p.expert_of(l, s);
      if (e < 0 || e >= p.num_experts) {
        return absl::InvalidArgumentError(absl::StrCat("phy2log[", l, "][", s,
                                                       "]: expected an expert id in "
                                                       "[0, ",
                                                       p.num_experts, "), got ", e));
      }
      ++count[e];
    }
    for (int e = 0; e < p.num_experts; ++e) {
      if (count[e] == 0 || p.count_of(l, e) != count[e]) {
        return absl::InvalidArgumentError(absl::StrCat("logcnt[", l, "][", e, "]: expected ", count[e],
                                                       " (>= 1, the replicas in phy2log), got ", p.count_of(l, e)));
      }
      max_count = std::max(max_count, count[e]);
      const int64_t base = (int64_t{l} * p.num_experts + e) * p.max_count;
      for (int r = 0; r < p.max_count; ++r) {
        const int64_t slot = p.log2phy[base + r];
        const bool ok = r < count[e]
                            ? slot >= 0 && slot < p.num_replicas && p.expert_of(l, slot) == e &&
                                  std::find(&p.log2phy[base], &p.log2phy[base + r], slot) == &p.log2phy[base + r]
                            : slot == -1;
        if (!ok) {
          return absl::InvalidArgumentError(absl::StrCat(
              "log2phy[", l, "][", e, "][", r, "]: expected ",
              r < count[e] ? absl::StrCat("a new slot holding expert ", e) : std::string("-1"), ", got ", slot));
        }
      }
    }
  }
  if (max_count != p.max_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("log2phy width: expected the largest count ", max_count, ", got ", p.max_count));
  }
  return absl::OkStatus();
}

}  // namespace tandem::balance
