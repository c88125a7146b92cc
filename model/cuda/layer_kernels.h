// -----------------------------------------------------------------------------
// File: layer_kernels.h
// -----------------------------------------------------------------------------
//
// The non-GEMM kernels of the GPU model, host-callable: each enqueues work
// on `stream` and returns the launch error. Tensors are row-major device
// buffers; f32 unless named bf16 (uint16_t). The math is the CPU layers'
// (model/README.md); reductions run in a fixed order per output element,
// so results are deterministic run to run.
#ifndef TANDEM_MODEL_CUDA_LAYER_KERNELS_H_
#define TANDEM_MODEL_CUDA_LAYER_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace tandem::model::cuda {

// Enqueues y = bf16(x) (round to nearest even) / y = f32(x).
cudaError_t EnqueueF32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
cudaError_t EnqueueBf16ToF32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);

// Enqueues RMSNorm: y = x * r * g, r[t] = 1 / sqrt(mean(x[t]^2) + eps).
cudaError_t EnqueueRmsNormForward(const float* x, const float* g, float* y, float* r, int64_t tokens, int64_t hidden,
                                  float eps, cudaStream_t stream);
// Enqueues dx = r g dy - x r^3 mean(g dy x) and dg += sum_t dy x r; either
// output may be null (the I / W split computes them at different times).
cudaError_t EnqueueRmsNormBackward(const float* x, const float* g, const float* r, const float* dy, float* dx,
                                   float* dg, int64_t tokens, int64_t hidden, cudaStream_t stream);

// Enqueues h = silu(a) * b and its backward da, db from dh.
cudaError_t EnqueueSwiGluForward(const float* a, const float* b, float* h, int64_t n, cudaStream_t stream);
cudaError_t EnqueueSwiGluBackward(const float* a, const float* b, const float* dh, float* da, float* db, int64_t n,
                                  cudaStream_t stream);

struct RouterParams {
  int num_experts = 0;  // <= 1024
  int top_k = 0;        // <= 16
  int n_group = 1;      // <= 64
  int topk_group = 1;
  bool sigmoid = true;
  float route_scale = 1.0f;
};

// Enqueues the gate after its logits: scores = sigmoid/softmax(logits),
// group-limited top-k on scores + bias (SelectExperts' rule and
// tie-breaks), idx [T, top_k] and weights [T, top_k].
cudaError_t EnqueueRouterForward(const float* logits, const float* bias, const RouterParams& p, int64_t tokens,
                                 float* scores, int32_t* idx, float* weights, cudaStream_t stream);
// Enqueues dlogits [T, E] from dweights [T, top_k].
cudaError_t EnqueueRouterBackward(const float* scores, const int32_t* idx, const float* dweights, const RouterParams& p,
                                  int64_t tokens, float* dlogits, cudaStream_t stream);

// Enqueues dst[i] = src[rows[i]] (rows of width h), scaled by
// scale[entries[i]] when scale is non-null.
cudaError_t EnqueueGatherRows(const float* src, const int32_t* rows, const float* scale, const int32_t* entries,
                              int64_t n, int64_t h, float* dst, cudaStream_t stream);

// Enqueues y[t] = (0 + sum_k w[t, k] * src[pos[t, k]]) + base[t], k in
// order, skipping pos < 0 (an expert of another rank); w == nullptr means
// weights of 1, base == nullptr adds nothing.
cudaError_t EnqueueCombine(const float* src, const int32_t* pos, const float* w, const float* base, int64_t tokens,
                           int top_k, int64_t h, float* y, cudaStream_t stream);

// Enqueues out[t, k] = <a[t], b[pos[t, k]]> (rows of width h); 0 where
// pos[t, k] < 0.
cudaError_t EnqueueRowDots(const float* a, const float* b, const int32_t* pos, int64_t tokens, int top_k, int64_t h,
                           float* out, cudaStream_t stream);

// Enqueues y += x.
cudaError_t EnqueueAdd(const float* x, float* y, int64_t n, cudaStream_t stream);

}  // namespace tandem::model::cuda

#endif  // TANDEM_MODEL_CUDA_LAYER_KERNELS_H_
