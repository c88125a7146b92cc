#include "balance/internal/cascade_sum.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace tandem::balance::internal {
namespace {

// One accumulator: W float lanes (W = 1 for the scalar path).
template <int W>
using Lanes = std::array<float, W>;

template <int W>
void AddInto(Lanes<W>& acc, const Lanes<W>& x) {
  for (int l = 0; l < W; ++l) acc[l] += x[l];
}

// Item `i` of a row read as consecutive W-float items.
template <int W>
Lanes<W> Item(const float* x, int64_t i) {
  Lanes<W> v{};
  std::copy(x + i * W, x + (i + 1) * W, v.begin());
  return v;
}

// torch's utils::CeilLog2 (1 for x <= 2).
int64_t CeilLog2(int64_t x) {
  if (x <= 2) return 1;
  int64_t bits = 0;
  for (uint64_t v = static_cast<uint64_t>(x) - 1; v != 0; v >>= 1) ++bits;
  return bits;
}

// torch's multi_row_sum with 4 rows: row k holds items 4i+k, i < size. The
// accumulator cascade has 4 levels of 2^level_power items each.
template <int W>
std::array<Lanes<W>, 4> MultiRowSum(const float* x, int64_t size) {
  constexpr int kLevels = 4;
  const int64_t level_power = std::max<int64_t>(4, CeilLog2(size) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;
  std::array<std::array<Lanes<W>, 4>, kLevels> acc{};
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int k = 0; k < 4; ++k) AddInto<W>(acc[0][k], Item<W>(x, 4 * i + k));
    }
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < 4; ++k) {
        AddInto<W>(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k] = Lanes<W>{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i) {
    for (int k = 0; k < 4; ++k) AddInto<W>(acc[0][k], Item<W>(x, 4 * i + k));
  }
  for (int j = 1; j < kLevels; ++j) {
    for (int k = 0; k < 4; ++k) AddInto<W>(acc[0][k], acc[j][k]);
  }
  return acc[0];
}

// torch's row_sum: 4-way interleaved partial sums, tail into the first.
template <int W>
Lanes<W> RowSum(const float* x, int64_t size) {
  const int64_t size_ilp = size / 4;
  std::array<Lanes<W>, 4> partial = MultiRowSum<W>(x, size_ilp);
  for (int64_t i = size_ilp * 4; i < size; ++i) {
    AddInto<W>(partial[0], Item<W>(x, i));
  }
  for (int k = 1; k < 4; ++k) AddInto<W>(partial[0], partial[k]);
  return partial[0];
}

// torch's vectorized_inner_sum for one row.
template <int V>
float VectorizedSum(const float* x, int64_t n) {
  const int64_t vec_size = n / V;
  const Lanes<V> lanes = RowSum<V>(x, vec_size);
  float sum = 0.0f;
  for (int64_t k = vec_size * V; k < n; ++k) sum += x[k];
  for (int l = 0; l < V; ++l) sum += lanes[l];
  return sum;
}

}  // namespace

float CascadeSum(const float* x, int64_t n, int lanes) {
  // The output starts at 0 and the row's sum is added to it.
  if (lanes == 16 && n >= 16) return 0.0f + VectorizedSum<16>(x, n);
  if (lanes != 16 && n >= 8) return 0.0f + VectorizedSum<8>(x, n);
  return 0.0f + RowSum<1>(x, n)[0];
}

}  // namespace tandem::balance::internal
