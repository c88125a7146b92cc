// -----------------------------------------------------------------------------
// File: cpu_gemm.h
// -----------------------------------------------------------------------------
//
// The CPU GEMMs of //model (row-major f32). Each output element is summed in
// an order that depends only on the reduction length, never on the other
// dimensions or on blocking, so a token's result is the same bits whether
// it is computed alone or inside any batch: what makes expert-parallel and
// pipelined runs bit-comparable with the single-rank model.
//
// Reduction orders (spelled out in model/README.md):
//   MatMulNT: 4 lanes, lane l sums k = l, l+4, ... in order, then
//             ((lane0 + lane1) + (lane2 + lane3)) + tail (k >= K/4*4 in order).
//   MatMulNN, MatMulTN: sequential over the reduction index, added to C.
#ifndef TANDEM_MODEL_INTERNAL_CPU_GEMM_H_
#define TANDEM_MODEL_INTERNAL_CPU_GEMM_H_

#include <cstdint>

namespace tandem::model::internal {

// MatMulNT()
//
// C[M,N] (+)= A[M,K] * B[N,K]^T (a Linear forward: x W^T). Accumulates into
// C when `accumulate`, else overwrites it.
void MatMulNT(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, bool accumulate);

// MatMulNN()
//
// C[M,N] += A[M,K] * B[K,N] (an input gradient: dy W). C must be initialised.
void MatMulNN(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k);

// MatMulTN()
//
// C[M,N] += A[K,M]^T * B[K,N] (a weight gradient: dy^T x), k = rows.
void MatMulTN(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k);

// Dot()
//
// sum_i a[i] * b[i] in MatMulNT's order.
float Dot(const float* a, const float* b, int64_t k);

}  // namespace tandem::model::internal

#endif  // TANDEM_MODEL_INTERNAL_CPU_GEMM_H_
