#include "model/partitioner.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tandem::model {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status CheckCosts(absl::Span<const double> costs, int stages) {
  for (size_t i = 0; i < costs.size(); ++i) {
    if (!(costs[i] >= 0.0) || std::isinf(costs[i])) {
      return absl::InvalidArgumentError(absl::StrCat("costs[", i, "]: expected a finite cost >= 0, got ", costs[i]));
    }
  }
  if (stages < 1 || static_cast<int>(costs.size()) < stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("stages: expected between 1 and the number of units (", costs.size(), "), got ", stages));
  }
  return absl::OkStatus();
}

std::vector<double> Prefix(absl::Span<const double> costs) {
  std::vector<double> p(costs.size() + 1, 0.0);
  for (size_t i = 0; i < costs.size(); ++i) p[i + 1] = p[i] + costs[i];
  return p;
}

void Finish(const std::vector<double>& prefix, Partition& p, int ranks) {
  p.stage_cost.clear();
  p.rank_cost.assign(ranks, 0.0);
  for (size_t s = 0; s + 1 < p.bounds.size(); ++s) {
    p.stage_cost.push_back(prefix[p.bounds[s + 1]] - prefix[p.bounds[s]]);
    p.rank_cost[p.rank[s]] += p.stage_cost.back();
  }
  p.max_rank_cost = *std::max_element(p.rank_cost.begin(), p.rank_cost.end());
}

}  // namespace

absl::StatusOr<Partition> PartitionUnits(absl::Span<const double> costs, int num_stages) {
  if (absl::Status s = CheckCosts(costs, num_stages); !s.ok()) return s;
  const int n = static_cast<int>(costs.size());
  const std::vector<double> prefix = Prefix(costs);
  // best[s][i]: the smallest max stage cost of units [i, n) in s stages.
  std::vector<std::vector<double>> best(num_stages + 1, std::vector<double>(n + 1, kInf));
  best[0][n] = 0.0;
  for (int s = 1; s <= num_stages; ++s) {
    for (int i = n - s; i >= 0; --i) {
      for (int j = i + 1; j <= n - (s - 1); ++j) {
        best[s][i] = std::min(best[s][i], std::max(prefix[j] - prefix[i], best[s - 1][j]));
      }
    }
  }
  Partition p;
  p.bounds.push_back(0);
  int i = 0;
  for (int s = num_stages; s >= 1; --s) {
    // The first (smallest) end that keeps the optimum.
    for (int j = i + 1; j <= n - (s - 1); ++j) {
      if (std::max(prefix[j] - prefix[i], best[s - 1][j]) <= best[num_stages][0] && (s > 1 || j == n)) {
        p.bounds.push_back(j);
        i = j;
        break;
      }
    }
  }
  for (int s = 0; s < num_stages; ++s) p.rank.push_back(s);
  Finish(prefix, p, num_stages);
  return p;
}

absl::StatusOr<Partition> PartitionVShape(absl::Span<const double> costs, int num_ranks) {
  if (num_ranks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("ranks: expected >= 1, got ", num_ranks));
  }
  if (absl::Status s = CheckCosts(costs, 2 * num_ranks); !s.ok()) return s;
  const int n = static_cast<int>(costs.size());
  if (n > 128) {
    return absl::InvalidArgumentError(absl::StrCat("units: expected at most 128 for the V-shape search, got ", n));
  }
  const std::vector<double> prefix = Prefix(costs);
  auto sum = [&](int a, int b) { return prefix[b] - prefix[a]; };
  const int r_count = num_ranks;
  // g[r][i][j]: the smallest max rank cost for ranks r..R-1 over units
  // [i, j); rank r takes [i, i') and [j', j).
  std::vector<double> g(static_cast<size_t>(r_count) * (n + 1) * (n + 1), kInf);
  auto at = [&](int r, int i, int j) -> double& { return g[(static_cast<size_t>(r) * (n + 1) + i) * (n + 1) + j]; };
  for (int r = r_count - 1; r >= 0; --r) {
    const int inner = 2 * (r_count - 1 - r);  // stages left for deeper ranks
    for (int i = 0; i <= n; ++i) {
      for (int j = i + 2 + inner; j <= n; ++j) {
        if (r == r_count - 1) {
          at(r, i, j) = sum(i, j);
          continue;
        }
        double best = kInf;
        for (int i2 = i + 1; i2 <= j - 1 - inner; ++i2) {
          for (int j2 = std::max(i2 + inner, i2 + 2); j2 <= j - 1; ++j2) {
            const double v = std::max(sum(i, i2) + sum(j2, j), at(r + 1, i2, j2));
            best = std::min(best, v);
          }
        }
        at(r, i, j) = best;
      }
    }
  }
  const double opt = at(0, 0, n);
  // Reconstruct with the smallest (i', then j') that keep the optimum.
  std::vector<int> left = {0}, right = {n};
  int i = 0, j = n;
  for (int r = 0; r + 1 < r_count; ++r) {
    const int inner = 2 * (r_count - 1 - r);
    bool found = false;
    for (int i2 = i + 1; i2 <= j - 1 - inner && !found; ++i2) {
      for (int j2 = std::max(i2 + inner, i2 + 2); j2 <= j - 1 && !found; ++j2) {
        if (std::max(sum(i, i2) + sum(j2, j), at(r + 1, i2, j2)) <= opt) {
          left.push_back(i2);
          right.push_back(j2);
          i = i2;
          j = j2;
          found = true;
        }
      }
    }
  }
  // The innermost rank holds two adjacent stages over [i, j): split them
  // as evenly as possible (first best split).
  int mid = i + 1;
  double best_split = kInf;
  for (int m = i + 1; m < j; ++m) {
    const double v = std::max(sum(i, m), sum(m, j));
    if (v < best_split) {
      best_split = v;
      mid = m;
    }
  }
  Partition p;
  p.bounds = left;
  p.bounds.push_back(mid);
  for (auto it = right.rbegin(); it != right.rend(); ++it) p.bounds.push_back(*it);
  for (int s = 0; s < 2 * r_count; ++s) p.rank.push_back(s < r_count ? s : 2 * r_count - 1 - s);
  Finish(prefix, p, r_count);
  return p;
}

}  // namespace tandem::model
