#include <cuda_bf16.h>

#include "model/cuda/layer_kernels.h"

namespace tandem::model::cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned Blocks(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65535 * 16) b = 65535 * 16;
  return static_cast<unsigned>(b);
}

__device__ inline float SigmoidF(float a) { return 1.0f / (1.0f + expf(-a)); }

__global__ void F32ToBf16Kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
  }
}

__global__ void Bf16ToF32Kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
  }
}

// One block per token; a fixed-shape tree reduction of x^2.
__global__ void RmsNormForwardKernel(const float* x, const float* g, float* y, float* r, int64_t hidden, float eps) {
  __shared__ float part[kThreads];
  const float* xt = x + blockIdx.x * hidden;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) s += xt[j] * xt[j];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  const float rt = rsqrtf(part[0] / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) r[blockIdx.x] = rt;
  float* yt = y + blockIdx.x * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) yt[j] = (xt[j] * rt) * g[j];
}

__global__ void RmsNormBackwardKernel(const float* x, const float* g, const float* r, const float* dy, float* dx,
                                      int64_t hidden) {
  __shared__ float part[kThreads];
  const int64_t t = blockIdx.x;
  const float* xt = x + t * hidden;
  const float* dyt = dy + t * hidden;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) s += g[j] * dyt[j] * xt[j];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  const float rt = r[t];
  const float c = part[0] * rt * rt * rt / static_cast<float>(hidden);
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) dx[t * hidden + j] = rt * g[j] * dyt[j] - xt[j] * c;
}

// One thread per channel, tokens in order: deterministic.
__global__ void RmsNormWeightGradKernel(const float* x, const float* r, const float* dy, float* dg, int64_t tokens,
                                        int64_t hidden) {
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (j >= hidden) return;
  float s = dg[j];
  for (int64_t t = 0; t < tokens; ++t) s += dy[t * hidden + j] * (x[t * hidden + j] * r[t]);
  dg[j] = s;
}

__global__ void SwiGluForwardKernel(const float* a, const float* b, float* h, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    h[i] = (a[i] * SigmoidF(a[i])) * b[i];
  }
}

__global__ void SwiGluBackwardKernel(const float* a, const float* b, const float* dh, float* da, float* db, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float s = SigmoidF(a[i]);
    db[i] = dh[i] * (a[i] * s);
    da[i] = dh[i] * b[i] * (s * (1.0f + a[i] * (1.0f - s)));
  }
}

// (value, index) ordering of SelectExperts: larger first, lower index on
// ties, NaN last.
__device__ inline bool Before(float a, int ia, float b, int ib) {
  if (isnan(b)) return !isnan(a) || ia < ib;
  if (isnan(a)) return false;
  return a > b || (a == b && ia < ib);
}

// One thread per token.
__global__ void RouterForwardKernel(const float* logits, const float* bias, RouterParams p, int64_t tokens,
                                    float* scores, int32_t* idx, float* weights) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= tokens) return;
  const int e_count = p.num_experts;
  const float* z = logits + t * e_count;
  float* s = scores + t * e_count;
  if (p.sigmoid) {
    for (int e = 0; e < e_count; ++e) s[e] = SigmoidF(z[e]);
  } else {
    float m = z[0];
    for (int e = 1; e < e_count; ++e) m = fmaxf(m, z[e]);
    float sum = 0.0f;
    for (int e = 0; e < e_count; ++e) {
      s[e] = expf(z[e] - m);
      sum += s[e];
    }
    for (int e = 0; e < e_count; ++e) s[e] /= sum;
  }
  const int per_group = e_count / p.n_group;
  unsigned long long allowed_groups = ~0ull;
  if (p.n_group > 1) {
    float gscore[64];
    for (int g = 0; g < p.n_group; ++g) {
      float b0 = 0, b1 = 0;
      int i0 = -1, i1 = -1;
      for (int j = g * per_group; j < (g + 1) * per_group; ++j) {
        const float c = s[j] + bias[j];
        if (i0 < 0 || Before(c, j, b0, i0)) {
          b1 = b0;
          i1 = i0;
          b0 = c;
          i0 = j;
        } else if (i1 < 0 || Before(c, j, b1, i1)) {
          b1 = c;
          i1 = j;
        }
      }
      gscore[g] = per_group >= 2 ? b0 + b1 : b0;
    }
    allowed_groups = 0;
    for (int r = 0; r < p.topk_group; ++r) {
      int pick = -1;
      for (int g = 0; g < p.n_group; ++g) {
        if (allowed_groups & (1ull << g)) continue;
        if (pick < 0 || Before(gscore[g], g, gscore[pick], pick)) pick = g;
      }
      allowed_groups |= 1ull << pick;
    }
  }
  int chosen[16];
  float sum = 0.0f;
  for (int r = 0; r < p.top_k; ++r) {
    int pick = -1;
    for (int j = 0; j < e_count; ++j) {
      if (p.n_group > 1 && !(allowed_groups & (1ull << (j / per_group)))) continue;
      bool taken = false;
      for (int q = 0; q < r; ++q) taken |= chosen[q] == j;
      if (taken) continue;
      if (pick < 0 || Before(s[j] + bias[j], j, s[pick] + bias[pick], pick)) pick = j;
    }
    chosen[r] = pick;
    idx[t * p.top_k + r] = pick;
    sum += s[pick];
  }
  for (int r = 0; r < p.top_k; ++r) {
    const float w = s[chosen[r]];
    weights[t * p.top_k + r] = p.sigmoid ? (w / sum) * p.route_scale : w * p.route_scale;
  }
}

__global__ void RouterBackwardKernel(const float* scores, const int32_t* idx, const float* dweights, RouterParams p,
                                     int64_t tokens, float* dlogits) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= tokens) return;
  const int e_count = p.num_experts;
  const int k = p.top_k;
  const float* s = scores + t * e_count;
  const float* dw = dweights + t * k;
  const int32_t* id = idx + t * k;
  float* dz = dlogits + t * e_count;
  for (int e = 0; e < e_count; ++e) dz[e] = 0.0f;
  if (p.sigmoid) {
    float sum = 0.0f, dot = 0.0f;
    for (int r = 0; r < k; ++r) {
      sum += s[id[r]];
      dot += dw[r] * s[id[r]];
    }
    for (int r = 0; r < k; ++r) {
      const float sj = s[id[r]];
      const float ds = p.route_scale * (dw[r] / sum - dot / (sum * sum));
      dz[id[r]] = ds * sj * (1.0f - sj);
    }
  } else {
    float dot = 0.0f;
    for (int r = 0; r < k; ++r) dot += p.route_scale * dw[r] * s[id[r]];
    for (int e = 0; e < e_count; ++e) dz[e] = -s[e] * dot;
    for (int r = 0; r < k; ++r) dz[id[r]] += s[id[r]] * p.route_scale * dw[r];
  }
}

__global__ void GatherRowsKernel(const float* src, const int32_t* rows, const float* scale, const int32_t* entries,
                                 int64_t n, int64_t h, float* dst) {
  const int64_t total = n * h;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / h, c = i % h;
    const float v = src[int64_t{rows[row]} * h + c];
    dst[i] = scale != nullptr ? scale[entries[row]] * v : v;
  }
}

__global__ void CombineKernel(const float* src, const int32_t* pos, const float* w, const float* base, int64_t tokens,
                              int k, int64_t h, float* y) {
  const int64_t total = tokens * h;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / h, c = i % h;
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int32_t p = pos[t * k + j];
      if (p < 0) continue;
      const float v = src[int64_t{p} * h + c];
      acc += w != nullptr ? w[t * k + j] * v : v;
    }
    y[i] = base != nullptr ? acc + base[i] : acc;
  }
}

// One warp per (token, k): lanes stride the row, then a fixed shuffle tree.
__global__ void RowDotsKernel(const float* a, const float* b, const int32_t* pos, int64_t pairs, int k, int64_t h,
                              float* out) {
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= pairs) return;
  if (pos[warp] < 0) {  // the whole warp takes this branch
    if (lane == 0) out[warp] = 0.0f;
    return;
  }
  const float* at = a + (warp / k) * h;
  const float* bt = b + int64_t{pos[warp]} * h;
  float s = 0.0f;
  for (int64_t c = lane; c < h; c += 32) s += at[c] * bt[c];
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) out[warp] = s;
}

__global__ void AddKernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] += x[i];
  }
}

}  // namespace

cudaError_t EnqueueF32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  F32ToBf16Kernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t EnqueueBf16ToF32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream) {
  Bf16ToF32Kernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t EnqueueRmsNormForward(const float* x, const float* g, float* y, float* r, int64_t tokens, int64_t hidden,
                                  float eps, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  RmsNormForwardKernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(x, g, y, r, hidden, eps);
  return cudaGetLastError();
}

cudaError_t EnqueueRmsNormBackward(const float* x, const float* g, const float* r, const float* dy, float* dx,
                                   float* dg, int64_t tokens, int64_t hidden, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  if (dx != nullptr) {
    RmsNormBackwardKernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(x, g, r, dy, dx, hidden);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  if (dg != nullptr) RmsNormWeightGradKernel<<<Blocks(hidden), kThreads, 0, stream>>>(x, r, dy, dg, tokens, hidden);
  return cudaGetLastError();
}

cudaError_t EnqueueSwiGluForward(const float* a, const float* b, float* h, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SwiGluForwardKernel<<<Blocks(n), kThreads, 0, stream>>>(a, b, h, n);
  return cudaGetLastError();
}

cudaError_t EnqueueSwiGluBackward(const float* a, const float* b, const float* dh, float* da, float* db, int64_t n,
                                  cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SwiGluBackwardKernel<<<Blocks(n), kThreads, 0, stream>>>(a, b, dh, da, db, n);
  return cudaGetLastError();
}

cudaError_t EnqueueRouterForward(const float* logits, const float* bias, const RouterParams& p, int64_t tokens,
                                 float* scores, int32_t* idx, float* weights, cudaStream_t stream) {
  if (p.num_experts < 1 || p.num_experts > 1024 || p.top_k < 1 || p.top_k > 16 || p.top_k > p.num_experts ||
      p.n_group < 1 || p.n_group > 64 || p.num_experts % p.n_group != 0 || p.topk_group < 1 ||
      p.topk_group > p.n_group || p.topk_group * (p.num_experts / p.n_group) < p.top_k) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  RouterForwardKernel<<<Blocks(tokens), kThreads, 0, stream>>>(logits, bias, p, tokens, scores, idx, weights);
  return cudaGetLastError();
}

cudaError_t EnqueueRouterBackward(const float* scores, const int32_t* idx, const float* dweights, const RouterParams& p,
                                  int64_t tokens, float* dlogits, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  RouterBackwardKernel<<<Blocks(tokens), kThreads, 0, stream>>>(scores, idx, dweights, p, tokens, dlogits);
  return cudaGetLastError();
}

cudaError_t EnqueueGatherRows(const float* src, const int32_t* rows, const float* scale, const int32_t* entries,
                              int64_t n, int64_t h, float* dst, cudaStream_t stream) {
  if (n * h == 0) return cudaSuccess;
  GatherRowsKernel<<<Blocks(n * h), kThreads, 0, stream>>>(src, rows, scale, entries, n, h, dst);
  return cudaGetLastError();
}

cudaError_t EnqueueCombine(const float* src, const int32_t* pos, const float* w, const float* base, int64_t tokens,
                           int top_k, int64_t h, float* y, cudaStream_t stream) {
  if (tokens * h == 0) return cudaSuccess;
  CombineKernel<<<Blocks(tokens * h), kThreads, 0, stream>>>(src, pos, w, base, tokens, top_k, h, y);
  return cudaGetLastError();
}

cudaError_t EnqueueRowDots(const float* a, const float* b, const int32_t* pos, int64_t tokens, int top_k, int64_t h,
                           float* out, cudaStream_t stream) {
  const int64_t pairs = tokens * top_k;
  if (pairs == 0) return cudaSuccess;
  RowDotsKernel<<<Blocks(pairs * 32), kThreads, 0, stream>>>(a, b, pos, pairs, top_k, h, out);
  return cudaGetLastError();
}

cudaError_t EnqueueAdd(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AddKernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

}  // namespace tandem::model::cuda
