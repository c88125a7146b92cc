#include "model/internal/cpu_gemm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "model/init.h"

namespace tandem::model::internal {
namespace {

std::vector<float> Random(int64_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = 2.0f * rng.NextUnit() - 1.0f;
  return v;
}

// Each kernel against a double-precision triple loop.
TEST(CpuGemmTest, MatchesNaiveDouble) {
  for (int64_t m : {1, 2, 3, 7}) {
    for (int64_t n : {1, 4, 5, 9}) {
      for (int64_t k : {1, 3, 4, 17, 64}) {
        std::vector<float> a = Random(m * k, 1), b = Random(n * k, 2);
        std::vector<float> c(m * n, 0.5f);
        MatMulNT(a.data(), b.data(), c.data(), m, n, k, /*accumulate=*/true);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double want = 0.5;
            for (int64_t p = 0; p < k; ++p) want += double{a[i * k + p]} * b[j * k + p];
            EXPECT_NEAR(c[i * n + j], want, 1e-5 * (1 + k)) << m << " " << n << " " << k;
          }
        }
        // NN: C[m, k] += A[m, n] B[n, k] (reusing the buffers' shapes).
        std::vector<float> a2 = Random(m * n, 3), b2 = Random(n * k, 4), c2(m * k, 0.0f);
        MatMulNN(a2.data(), b2.data(), c2.data(), m, k, n);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < k; ++j) {
            double want = 0;
            for (int64_t p = 0; p < n; ++p) want += double{a2[i * n + p]} * b2[p * k + j];
            EXPECT_NEAR(c2[i * k + j], want, 1e-5 * (1 + n));
          }
        }
        // TN: C[n, k] += A[m, n]^T B[m, k].
        std::vector<float> c3(n * k, 0.0f);
        std::vector<float> b3 = Random(m * k, 5);
        MatMulTN(a2.data(), b3.data(), c3.data(), n, k, m);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < k; ++j) {
            double want = 0;
            for (int64_t p = 0; p < m; ++p) want += double{a2[p * n + i]} * b3[p * k + j];
            EXPECT_NEAR(c3[i * k + j], want, 1e-5 * (1 + m));
          }
        }
      }
    }
  }
}

// A row's result has the same bits whatever the batch around it.
TEST(CpuGemmTest, RowResultsIndependentOfBatch) {
  const int64_t m = 9, n = 13, k = 37;
  std::vector<float> a = Random(m * k, 6), b = Random(n * k, 7);
  std::vector<float> all(m * n);
  MatMulNT(a.data(), b.data(), all.data(), m, n, k, false);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<float> one(n);
    MatMulNT(a.data() + i * k, b.data(), one.data(), 1, n, k, false);
    EXPECT_EQ(std::memcmp(one.data(), all.data() + i * n, n * 4), 0) << "row " << i;
    for (int64_t j = 0; j < n; ++j) {
      const float d = Dot(a.data() + i * k, b.data() + j * k, k);
      EXPECT_EQ(std::memcmp(&d, &all[i * n + j], 4), 0);
    }
  }
}

}  // namespace
}  // namespace tandem::model::internal
