// -----------------------------------------------------------------------------
// File: cascade_sum.h
// -----------------------------------------------------------------------------
//
// Float32 row sums in the exact order of PyTorch 1.13's CPU `sum` kernel
// (`cascade_sum`), which the EPLB reference uses for its group loads. The
// order matters once partial sums are inexact (loads beyond 2^24, fractions):
// a left fold can differ in the last ulp and flip which node gets a group.
//
// The order, for a contiguous row of n floats and a vector width of V lanes:
// n < V: four scalar accumulators p_k = sum of x[4i+k] (a cascade of levels
// for long rows), the tail added to p_0, then ((p_0+p_1)+p_2)+p_3.
// n >= V: the same over V-wide vectors, then the scalar tail summed from 0,
// then the V lanes added to it left to right.

#ifndef TANDEM_BALANCE_INTERNAL_CASCADE_SUM_H_
#define TANDEM_BALANCE_INTERNAL_CASCADE_SUM_H_

#include <cstdint>

namespace tandem::balance::internal {

// Vector width of torch's default AVX2 dispatch; 16 under
// ATEN_CPU_CAPABILITY=avx512.
inline constexpr int kTorchAvx2Lanes = 8;

// CascadeSum()
//
// Returns the float32 sum of x[0..n) in torch's cascade order for a vector
// width of `lanes` (8 or 16; other values are treated as 8). n >= 0.
float CascadeSum(const float* x, int64_t n, int lanes = kTorchAvx2Lanes);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_CASCADE_SUM_H_
