#include "model/internal/cpu_gemm.h"

#include <algorithm>
#include <cstring>

namespace tandem::model::internal {
namespace {

// Register tile of MatMulNT: kRows rows of A against kCols rows of B, each
// pair with 4 lane accumulators.
constexpr int kRows = 2;
constexpr int kCols = 4;

inline float Reduce(const float lanes[4], float tail) { return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + tail; }

// Four f32 lanes (SSE); lane l accumulates k = l, l + 4, ... exactly as
// the scalar definition in cpu_gemm.h.
typedef float V4 __attribute__((vector_size(16)));

inline V4 Load4(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int R, int C>
void Tile(const float* const* a, const float* const* b, int64_t k, float out[R][C]) {
  V4 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = V4{0, 0, 0, 0};
  }
  const int64_t k4 = k / 4 * 4;
  for (int64_t p = 0; p < k4; p += 4) {
    V4 av[R], bv[C];
    for (int r = 0; r < R; ++r) av[r] = Load4(a[r] + p);
    for (int c = 0; c < C; ++c) bv[c] = Load4(b[c] + p);
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) acc[r][c] += av[r] * bv[c];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float tail = 0.0f;
      for (int64_t p = k4; p < k; ++p) tail += a[r][p] * b[c][p];
      float lanes[4];
      std::memcpy(lanes, &acc[r][c], sizeof(lanes));
      out[r][c] = Reduce(lanes, tail);
    }
  }
}

}  // namespace

float Dot(const float* a, const float* b, int64_t k) {
  float out[1][1];
  Tile<1, 1>(&a, &b, k, out);
  return out[0][0];
}

void MatMulNT(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, bool accumulate) {
  // Blocks of B rows that stay in cache while all rows of A pass by.
  const int64_t block_n = std::max<int64_t>(kCols, (int64_t{64} << 10) / std::max<int64_t>(1, k * 4) / kCols * kCols);
  for (int64_t j0 = 0; j0 < n; j0 += block_n) {
    const int64_t j1 = std::min(n, j0 + block_n);
    int64_t i = 0;
    for (; i + kRows <= m; i += kRows) {
      const float* ar[kRows] = {a + i * k, a + (i + 1) * k};
      int64_t j = j0;
      for (; j + kCols <= j1; j += kCols) {
        const float* br[kCols] = {b + j * k, b + (j + 1) * k, b + (j + 2) * k, b + (j + 3) * k};
        float out[kRows][kCols];
        Tile<kRows, kCols>(ar, br, k, out);
        for (int r = 0; r < kRows; ++r) {
          for (int cc = 0; cc < kCols; ++cc) {
            float& dst = c[(i + r) * n + j + cc];
            dst = accumulate ? dst + out[r][cc] : out[r][cc];
          }
        }
      }
      for (; j < j1; ++j) {
        const float* br[1] = {b + j * k};
        float out[kRows][1];
        Tile<kRows, 1>(ar, br, k, out);
        for (int r = 0; r < kRows; ++r) {
          float& dst = c[(i + r) * n + j];
          dst = accumulate ? dst + out[r][0] : out[r][0];
        }
      }
    }
    for (; i < m; ++i) {
      const float* ar[1] = {a + i * k};
      int64_t j = j0;
      for (; j + kCols <= j1; j += kCols) {
        const float* br[kCols] = {b + j * k, b + (j + 1) * k, b + (j + 2) * k, b + (j + 3) * k};
        float out[1][kCols];
        Tile<1, kCols>(ar, br, k, out);
        for (int cc = 0; cc < kCols; ++cc) {
          float& dst = c[i * n + j + cc];
          dst = accumulate ? dst + out[0][cc] : out[0][cc];
        }
      }
      for (; j < j1; ++j) {
        float& dst = c[i * n + j];
        const float v = Dot(a + i * k, b + j * k, k);
        dst = accumulate ? dst + v : v;
      }
    }
  }
}

void MatMulNN(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  // Row i of C gathers rows of B scaled by A[i, p], p in order; columns are
  // blocked so the C row segment stays in registers/L1.
  constexpr int64_t kBlock = 256;
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t len = std::min(kBlock, n - j0);
    for (int64_t i = 0; i < m; ++i) {
      float* crow = c + i * n + j0;
      const float* arow = a + i * k;
      for (int64_t p = 0; p < k; ++p) {
        const float s = arow[p];
        const float* brow = b + p * n + j0;
        for (int64_t j = 0; j < len; ++j) crow[j] += s * brow[j];
      }
    }
  }
}

void MatMulTN(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  // C[i, :] += A[p, i] * B[p, :], p in order; rows of C in blocks that stay
  // in cache while p runs.
  const int64_t block_m = std::max<int64_t>(1, (int64_t{128} << 10) / std::max<int64_t>(1, n * 4));
  for (int64_t i0 = 0; i0 < m; i0 += block_m) {
    const int64_t i1 = std::min(m, i0 + block_m);
    for (int64_t p = 0; p < k; ++p) {
      const float* brow = b + p * n;
      const float* arow = a + p * m;
      for (int64_t i = i0; i < i1; ++i) {
        const float s = arow[i];
        float* crow = c + i * n;
        for (int64_t j = 0; j < n; ++j) crow[j] += s * brow[j];
      }
    }
  }
}

}  // namespace tandem::model::internal
