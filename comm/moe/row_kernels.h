// -----------------------------------------------------------------------------
// File: row_kernels.h
// -----------------------------------------------------------------------------
//
// Device kernels of dispatch_gpu: row gather, FP8 quantization and the
// rank-ordered per-token sum of combine. Host-callable, stream-taking.

#ifndef TANDEM_COMM_MOE_ROW_KERNELS_H_
#define TANDEM_COMM_MOE_ROW_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "comm/types.h"

namespace tandem::comm::moe {

// Enqueues out[i] = x[rows[i]] for i < n (rows of `row_bytes`).
cudaError_t EnqueueGatherRows(const void* x, const int32_t* rows, int64_t n, int64_t row_bytes, void* out,
                              cudaStream_t stream);

// Enqueues FP8 quantization of n rows [n x hidden] (f32 or bf16): codes
// [n x hidden] e4m3 and scales [n x ceil(hidden/128)] f32 (scale =
// max(max|x|, 1e-4) / 448 per 128-channel group), and the inverse.
cudaError_t EnqueueQuantizeFp8(const void* x, DataType t, int64_t n, int hidden, uint8_t* codes, float* scales,
                               cudaStream_t stream);
cudaError_t EnqueueDequantizeFp8(const uint8_t* codes, const float* scales, int64_t n, int hidden, DataType t,
                                 void* out, cudaStream_t stream);

// Enqueues out[t] = sum over j in [offsets[t], offsets[t+1]) of rows[order[j]],
// accumulated in f32 from 0 in j order, rounded once to `t`; tokens with no
// rows get zero.
cudaError_t EnqueueSumRows(const void* rows, const int32_t* order, const int32_t* offsets, int64_t tokens, int hidden,
                           DataType t, void* out, cudaStream_t stream);

}  // namespace tandem::comm::moe

#endif  // TANDEM_COMM_MOE_ROW_KERNELS_H_
