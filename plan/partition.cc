#include "plan/partition.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "absl/strings/str_format.h"
#include "base/speeds.h"
#include "base/status_macros.h"

namespace tandem::plan {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kMaxNestedUnits = 128;

// A stage copy on a rank: the stage and its index in PeakInFlight().
struct Copy {
  int stage;
  int index;
};

// What a rank's copies cost for a stage -> unit range assignment.
class Ranks {
 public:
  Ranks(const schedule::Schedule& s, const PartitionRequest& r) : s_(s), r_(r), peak_(PeakInFlight(s)) {
    copies_.resize(s.ranks);
    for (int d = 0; d < s.directions; ++d) {
      for (int st = 0; st < s.stages; ++st) {
        const int rank = s.RankOf(d, st);
        if (rank >= 0) copies_[rank].push_back({st, d * s.stages + st});
      }
    }
    prefix_.assign(r.unit_costs.size() + 1, 0.0);
    for (size_t u = 0; u < r.unit_costs.size(); ++u) prefix_[u + 1] = prefix_[u] + r.unit_costs[u];
  }

  const std::vector<Copy>& copies(int rank) const { return copies_[rank]; }
  double speed(int rank) const { return r_.rank_speed.empty() ? 1.0 : r_.rank_speed[rank]; }
  double Cost(int begin, int end) const { return prefix_[end] - prefix_[begin]; }
  // One copy's time and memory over units [begin, end).
  double CopyTime(int rank, int begin, int end) const {
    return Cost(begin, end) * s_.microbatches_per_direction() / speed(rank);
  }
  double CopyMemory(const Copy& c, int begin, int end) const {
    if (r_.unit_memory.empty()) return 0;
    return CopyBytes(r_.unit_memory, begin, end, peak_[c.index], r_.tokens);
  }
  double cap() const { return r_.memory_cap_bytes > 0 ? r_.memory_cap_bytes : kInf; }

 private:
  const schedule::Schedule& s_;
  const PartitionRequest& r_;
  const std::vector<int> peak_;
  std::vector<std::vector<Copy>> copies_;
  std::vector<double> prefix_;
};

// What a stage (chain) or a level (nested) costs for unit ranges: `value`,
// the objective (the largest of its ranks' times, or bytes; +inf when it
// does not fit), and `squares`, the sum of its ranks' squared values.
struct Cost {
  double value;
  double squares;
};
using StageFn = std::function<Cost(int stage, int begin, int end)>;
using LevelFn = std::function<Cost(int level, int lb, int le, int rb, int re)>;

// Contiguous cuts of n units into `stages` stages minimising the largest
// value; among the optima the smallest sum of squares (the other stages
// balanced, not the first one left with a single unit), then the
// lexicographically smallest bounds. Empty when none is finite.
std::vector<int> ChainSearch(int n, int stages, const StageFn& fn, double* best_value) {
  // best[s][i]: the smallest max over stages s.. of units [i, n).
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, kInf));
  best[stages][n] = 0;
  // fn(s, i, j) does not decrease with j (costs and bytes are >= 0): once a
  // stage alone is no better than the best so far, longer ones are not.
  for (int s = stages - 1; s >= 0; --s) {
    for (int i = s; i <= n - (stages - s); ++i) {
      for (int j = i + 1; j <= n - (stages - s - 1); ++j) {
        const double value = fn(s, i, j).value;
        if (value >= best[s][i]) break;
        best[s][i] = std::min(best[s][i], std::max(value, best[s + 1][j]));
      }
    }
  }
  const double opt = best[0][0];
  *best_value = opt;
  if (opt == kInf) return {};
  // squares[s][i]: the smallest sum of squares over stages s.. of units
  // [i, n) with every stage within the optimum; next[s][i] the first cut.
  std::vector<std::vector<double>> squares(stages + 1, std::vector<double>(n + 1, kInf));
  std::vector<std::vector<int>> next(stages + 1, std::vector<int>(n + 1, -1));
  squares[stages][n] = 0;
  for (int s = stages - 1; s >= 0; --s) {
    for (int i = s; i <= n - (stages - s); ++i) {
      if (best[s][i] > opt) continue;  // nothing from here fits the optimum
      for (int j = i + 1; j <= n - (stages - s - 1); ++j) {
        const Cost c = fn(s, i, j);
        if (c.value > opt) break;
        if (squares[s + 1][j] == kInf) continue;
        if (c.squares + squares[s + 1][j] < squares[s][i]) {
          squares[s][i] = c.squares + squares[s + 1][j];
          next[s][i] = j;
        }
      }
    }
  }
  std::vector<int> bounds = {0};
  for (int s = 0; s < stages; ++s) bounds.push_back(next[s][bounds.back()]);
  return bounds;
}

// Nested levels: level k holds [i_k, i_{k+1}) and [j_{k+1}, j_k); the
// innermost holds two adjacent ranges [i, m) and [m, j). The same order of
// objectives as ChainSearch(). Returns the 2 * levels + 1 stage bounds, or
// empty when none is finite.
std::vector<int> NestedSearch(int n, int levels, const LevelFn& fn, double* best_value) {
  const size_t size = static_cast<size_t>(levels) * (n + 1) * (n + 1);
  auto index = [&](int k, int i, int j) { return (static_cast<size_t>(k) * (n + 1) + i) * (n + 1) + j; };
  // g: the smallest max over levels k.. inside [i, j).
  std::vector<double> g(size, kInf);
  // Level k lies inside [k, n - k); level 0 is [0, n).
  auto outside = [&](int k, int i, int j) { return k == 0 ? i != 0 || j != n : i < k || j > n - k; };
  for (int k = levels - 1; k >= 0; --k) {
    const int deeper = 2 * (levels - 1 - k);  // stages inside level k
    for (int i = 0; i <= n; ++i) {
      for (int j = i + 2 + deeper; j <= n; ++j) {
        if (outside(k, i, j)) continue;
        double best = kInf;
        if (k == levels - 1) {
          for (int m = i + 1; m < j; ++m) best = std::min(best, fn(k, i, m, m, j).value);
        } else {
          // The level's value does not decrease as j2 falls (its right range
          // grows): stop once it alone is no better than the best so far.
          for (int i2 = i + 1; i2 <= j - 1 - deeper; ++i2) {
            for (int j2 = j - 1; j2 >= i2 + deeper; --j2) {
              const double value = fn(k, i, i2, j2, j).value;
              if (value >= best) break;
              best = std::min(best, std::max(value, g[index(k + 1, i2, j2)]));
            }
          }
        }
        g[index(k, i, j)] = best;
      }
    }
  }
  const double opt = g[index(0, 0, n)];
  *best_value = opt;
  if (opt == kInf) return {};
  // squares: the smallest sum of squares over levels k.. inside [i, j) with
  // every level within the optimum; the cut that reaches it (the innermost
  // level's middle, or the next level's range).
  std::vector<double> squares(size, kInf);
  std::vector<std::pair<int, int>> cut(size, {-1, -1});
  for (int k = levels - 1; k >= 0; --k) {
    const int deeper = 2 * (levels - 1 - k);
    for (int i = 0; i <= n; ++i) {
      for (int j = i + 2 + deeper; j <= n; ++j) {
        // Outside, or nothing inside within the optimum: stays +inf.
        if (g[index(k, i, j)] > opt) continue;
        double& best = squares[index(k, i, j)];
        if (k == levels - 1) {
          for (int m = i + 1; m < j; ++m) {
            const Cost c = fn(k, i, m, m, j);
            if (c.value <= opt && c.squares < best) {
              best = c.squares;
              cut[index(k, i, j)] = {m, m};
            }
          }
          continue;
        }
        for (int i2 = i + 1; i2 <= j - 1 - deeper; ++i2) {
          for (int j2 = j - 1; j2 >= i2 + deeper; --j2) {
            const double inner = squares[index(k + 1, i2, j2)];
            if (inner == kInf) continue;
            const Cost c = fn(k, i, i2, j2, j);
            if (c.value > opt) break;
            // Ties to the smallest (i2, j2).
            const double total = c.squares + inner;
            if (total < best || (total == best && std::make_pair(i2, j2) < cut[index(k, i, j)])) {
              best = total;
              cut[index(k, i, j)] = {i2, j2};
            }
          }
        }
      }
    }
  }
  std::vector<int> left = {0}, right = {n};
  for (int k = 0; k < levels; ++k) {
    const auto [i2, j2] = cut[index(k, left.back(), right.back())];
    left.push_back(i2);
    if (k + 1 < levels) right.push_back(j2);
  }
  std::vector<int> bounds = left;
  for (auto it = right.rbegin(); it != right.rend(); ++it) bounds.push_back(*it);
  return bounds;
}

enum class Shape { kChain, kNested, kOther };

// How the schedule places stages on ranks (see the header).
Shape Classify(const schedule::Schedule& s, const Ranks& ranks, int* per_rank) {
  *per_rank = 0;
  for (int r = 0; r < s.ranks; ++r) *per_rank = std::max(*per_rank, static_cast<int>(ranks.copies(r).size()));
  bool chain = *per_rank == 1 && s.stages == s.ranks;
  if (chain) return Shape::kChain;
  if (s.stages % 2 != 0 || *per_rank != 2) return Shape::kOther;
  for (int r = 0; r < s.ranks; ++r) {
    const std::vector<Copy>& c = ranks.copies(r);
    if (c.size() != 2) return Shape::kOther;
    const int lo = std::min(c[0].stage, c[1].stage), hi = std::max(c[0].stage, c[1].stage);
    if (lo + hi != s.stages - 1) return Shape::kOther;
  }
  return Shape::kNested;
}

}  // namespace

std::vector<double> UnitFlops(const model::ModelConfig& c) {
  const double h = c.hidden, swiglu = 3.0 * h * c.moe_inter;
  std::vector<double> flops(model::NumUnits(c));
  flops.front() = c.input_dim * h;
  flops.back() = h * c.output_dim + h;
  for (int b = 0; b < c.num_layers; ++b) {
    flops[b + 1] = b < c.num_dense_layers ? h + 3.0 * h * c.dense_inter
                                          : h + h * c.num_experts + (c.top_k + c.num_shared_experts) * swiglu;
  }
  for (double& f : flops) f *= 6.0;  // forward multiply-add x 2, backward x 2
  return flops;
}

absl::StatusOr<StagePlan> Evaluate(const schedule::Schedule& s, const PartitionRequest& request,
                                   const std::vector<int>& bounds) {
  TANDEM_RETURN_IF_ERROR(CheckBounds(bounds, s.stages, static_cast<int>(request.unit_costs.size())));
  const Ranks ranks(s, request);
  StagePlan plan;
  plan.bounds = bounds;
  plan.rank_time.assign(s.ranks, 0.0);
  plan.rank_memory.assign(s.ranks, 0.0);
  for (int r = 0; r < s.ranks; ++r) {
    for (const Copy& c : ranks.copies(r)) {
      plan.rank_time[r] += ranks.CopyTime(r, bounds[c.stage], bounds[c.stage + 1]);
      plan.rank_memory[r] += ranks.CopyMemory(c, bounds[c.stage], bounds[c.stage + 1]);
    }
    plan.max_rank_time = std::max(plan.max_rank_time, plan.rank_time[r]);
  }
  return plan;
}

absl::StatusOr<StagePlan> PartitionStages(const schedule::Schedule& s, const PartitionRequest& request) {
  const int n = static_cast<int>(request.unit_costs.size());
  for (int u = 0; u < n; ++u) {
    const double v = request.unit_costs[u];
    if (!(v >= 0) || std::isinf(v)) {
      return absl::InvalidArgumentError(absl::StrFormat("unit_costs[%d]: expected a finite cost >= 0, got %g", u, v));
    }
  }
  if (n < s.stages) {
    return absl::InvalidArgumentError(
        absl::StrFormat("units: expected at least one per stage (%d stages), got %d units", s.stages, n));
  }
  if (!request.rank_speed.empty()) {
    if (static_cast<int>(request.rank_speed.size()) != s.ranks) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "rank_speed: expected %d speeds (one per pipeline rank), got %d", s.ranks, request.rank_speed.size()));
    }
    TANDEM_RETURN_IF_ERROR(CheckSpeeds("rank_speed", request.rank_speed));
  }
  if (!request.unit_memory.empty() && static_cast<int>(request.unit_memory.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unit_memory: expected %d units as unit_costs, got %d", n, request.unit_memory.size()));
  }
  if (!(request.memory_cap_bytes >= 0) || std::isinf(request.memory_cap_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("memory cap: expected a finite byte count >= 0, got %g", request.memory_cap_bytes));
  }
  const Ranks ranks(s, request);
  int per_rank = 0;
  const Shape shape = Classify(s, ranks, &per_rank);
  if (shape == Shape::kNested && n > kMaxNestedUnits) {
    return absl::InvalidArgumentError(
        absl::StrFormat("units: expected at most %d for the nested search, got %d", kMaxNestedUnits, n));
  }
  // Rank of each stage on chains and other placements (the first copy's).
  std::vector<int> stage_rank(s.stages, 0);
  std::vector<Copy> stage_copy(s.stages);
  for (int r = 0; r < s.ranks; ++r) {
    for (const Copy& c : ranks.copies(r)) {
      stage_rank[c.stage] = r;
      stage_copy[c.stage] = c;
    }
  }
  // Runs the search of this placement with `memory` as the objective
  // (cap ignored) or the time under the cap.
  auto search = [&](bool memory, double* value) -> std::vector<int> {
    if (shape == Shape::kNested) {
      // Level k: stages k and S-1-k on the ranks holding them.
      std::vector<std::vector<int>> level_ranks(s.stages / 2);
      for (int r = 0; r < s.ranks; ++r) {
        level_ranks[std::min(ranks.copies(r)[0].stage, ranks.copies(r)[1].stage)].push_back(r);
      }
      return NestedSearch(
          n, s.stages / 2,
          [&](int k, int lb, int le, int rb, int re) {
            double time = 0, bytes = 0, time_squares = 0, byte_squares = 0;
            for (int r : level_ranks[k]) {
              double t = 0, m = 0;
              for (const Copy& c : ranks.copies(r)) {
                const bool left = c.stage == k;
                t += ranks.CopyTime(r, left ? lb : rb, left ? le : re);
                m += ranks.CopyMemory(c, left ? lb : rb, left ? le : re);
              }
              time = std::max(time, t);
              bytes = std::max(bytes, m);
              time_squares += t * t;
              byte_squares += m * m;
            }
            if (memory) return Cost{bytes, byte_squares};
            return bytes <= ranks.cap() ? Cost{time, time_squares} : Cost{kInf, kInf};
          },
          value);
    }
    return ChainSearch(
        n, s.stages,
        [&](int st, int b, int e) {
          const int r = stage_rank[st];
          const double bytes = ranks.CopyMemory(stage_copy[st], b, e);
          if (memory) return Cost{bytes, bytes * bytes};
          // Other placements: each copy of a rank gets an equal share of the cap.
          const double share = ranks.cap() / static_cast<double>(ranks.copies(r).size());
          const double time = ranks.CopyTime(r, b, e);
          return bytes <= share ? Cost{time, time * time} : Cost{kInf, kInf};
        },
        value);
  };
  double value = 0;
  std::vector<int> bounds = search(false, &value);
  if (bounds.empty()) {
    double least = 0;
    std::vector<int> lean = search(true, &least);
    TANDEM_ASSIGN_OR_RETURN(StagePlan lean_plan, Evaluate(s, request, lean));
    const double fullest = *std::max_element(lean_plan.rank_memory.begin(), lean_plan.rank_memory.end());
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory cap %.4g GiB per rank: no partition of the %d units into %d stages fits; the leanest needs %.4g GiB "
        "on its fullest rank",
        request.memory_cap_bytes / (1 << 30), n, s.stages, fullest / (1 << 30)));
  }
  TANDEM_ASSIGN_OR_RETURN(StagePlan plan, Evaluate(s, request, bounds));
  plan.exact = shape != Shape::kOther;
  plan.bound = plan.exact ? 1.0 : per_rank;
  return plan;
}

}  // namespace tandem::plan
