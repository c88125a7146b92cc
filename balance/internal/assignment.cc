#include "balance/internal/assignment.h"

#include <cstdint>
#include <limits>
#include <vector>

namespace tandem::balance::internal {

std::vector<int> MinCostAssignment(const std::vector<int64_t>& cost, int n) {
  // Rows are added one at a time; each addition grows a shortest-path tree
  // over columns under reduced costs (row potential u, column potential v)
  // until it reaches a free column, then flips the path. Index 0 of the
  // 1-based arrays is a virtual column holding the row being added.
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  std::vector<int64_t> u(n + 1, 0), v(n + 1, 0);
  std::vector<int> row_of(n + 1, 0), way(n + 1, 0);
  for (int row = 1; row <= n; ++row) {
    row_of[0] = row;
    int col = 0;
    std::vector<int64_t> min_to(n + 1, kInf);
    std::vector<char> used(n + 1, 0);
    do {
      used[col] = 1;
      const int r = row_of[col];
      int64_t delta = kInf;
      int next = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const int64_t reduced = cost[(r - 1) * static_cast<int64_t>(n) + j - 1] - u[r] - v[j];
        if (reduced < min_to[j]) {
          min_to[j] = reduced;
          way[j] = col;
        }
        if (min_to[j] < delta) {
          delta = min_to[j];
          next = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[row_of[j]] += delta;
          v[j] -= delta;
        } else {
          min_to[j] -= delta;
        }
      }
      col = next;
    } while (row_of[col] != 0);
    do {
      const int prev = way[col];
      row_of[col] = row_of[prev];
      col = prev;
    } while (col != 0);
  }
  std::vector<int> col_of(n, 0);
  for (int j = 1; j <= n; ++j) {
    if (row_of[j] != 0) col_of[row_of[j] - 1] = j - 1;
  }
  return col_of;
}

}  // namespace tandem::balance::internal
