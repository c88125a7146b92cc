#include <cuda_bf16.h>

#include "comm/moe/row_kernels.h"

namespace tandem::comm::moe {
namespace {

__device__ float LoadF(const void* p, int64_t i, bool bf16) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
}

__device__ void StoreF(void* p, int64_t i, float v, bool bf16) {
  if (bf16) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

__global__ void GatherRows(const char* x, const int32_t* rows, int64_t n, int64_t row_bytes, char* out) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const char* src = x + rows[i] * row_bytes;
    char* dst = out + i * row_bytes;
    if (row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
      for (int64_t b = threadIdx.x; b < row_bytes / 16; b += blockDim.x) {
        reinterpret_cast<int4*>(dst)[b] = reinterpret_cast<const int4*>(src)[b];
      }
    } else {
      for (int64_t b = threadIdx.x; b < row_bytes; b += blockDim.x) dst[b] = src[b];
    }
  }
}

// e4m3 (fn) with round to nearest even, saturating at 448; matches the host's
// FloatToE4M3 for finite inputs.
__device__ uint8_t ToE4M3(float f) {
  if (isnan(f)) return 0x7f;
  const uint8_t sign = signbit(f) ? 0x80 : 0;
  const float a = fabsf(f);
  if (a >= 448.0f) return sign | 0x7e;
  if (a == 0.0f) return sign;
  int e;
  frexpf(a, &e);
  int exp_field = e - 1 + 7;
  if (exp_field < 1) return sign | static_cast<uint8_t>(__float2int_rn(ldexpf(a, 9)));
  int mant = __float2int_rn((ldexpf(a, -(e - 1)) - 1.0f) * 8.0f);
  if (mant == 8) {
    mant = 0;
    ++exp_field;
  }
  if (exp_field > 15 || (exp_field == 15 && mant == 7)) return sign | 0x7e;
  return sign | static_cast<uint8_t>(exp_field << 3) | static_cast<uint8_t>(mant);
}

__device__ float FromE4M3(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp_field = (v >> 3) & 0xf, mant = v & 7;
  if (exp_field == 15 && mant == 7) return nanf("");
  if (exp_field == 0) return sign * ldexpf(static_cast<float>(mant), -9);
  return sign * ldexpf(1.0f + mant / 8.0f, exp_field - 7);
}

// One block per (row, 128-channel group).
__global__ void Quantize(const void* x, bool bf16, int hidden, int groups, uint8_t* codes, float* scales) {
  const int64_t row = blockIdx.x / groups;
  const int g = blockIdx.x % groups;
  const int lo = g * 128, hi = min(hidden, lo + 128);
  __shared__ float amax[128];
  const int c = lo + threadIdx.x;
  amax[threadIdx.x] = c < hi ? fabsf(LoadF(x, row * hidden + c, bf16)) : 0.0f;
  __syncthreads();
  for (int s = 64; s > 0; s /= 2) {
    if (threadIdx.x < s) amax[threadIdx.x] = fmaxf(amax[threadIdx.x], amax[threadIdx.x + s]);
    __syncthreads();
  }
  const float scale = fmaxf(amax[0], 1e-4f) / 448.0f;
  if (threadIdx.x == 0) scales[row * groups + g] = scale;
  if (c < hi) codes[row * hidden + c] = ToE4M3(LoadF(x, row * hidden + c, bf16) / scale);
}

__global__ void Dequantize(const uint8_t* codes, const float* scales, int64_t n, int hidden, int groups, bool bf16,
                           void* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * hidden;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / hidden;
    const int c = static_cast<int>(i % hidden);
    StoreF(out, i, FromE4M3(codes[i]) * scales[row * groups + c / 128], bf16);
  }
}

__global__ void SumRows(const void* rows, const int32_t* order, const int32_t* offsets, int64_t tokens, int hidden,
                        bool bf16, void* out) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      float acc = 0.0f;
      for (int32_t j = offsets[t]; j < offsets[t + 1]; ++j) acc += LoadF(rows, int64_t{order[j]} * hidden + c, bf16);
      StoreF(out, t * hidden + c, acc, bf16);
    }
  }
}

int Blocks(int64_t n) { return static_cast<int>(n < 65535 ? (n > 0 ? n : 1) : 65535); }

}  // namespace

cudaError_t EnqueueGatherRows(const void* x, const int32_t* rows, int64_t n, int64_t row_bytes, void* out,
                              cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  GatherRows<<<Blocks(n), 256, 0, stream>>>(static_cast<const char*>(x), rows, n, row_bytes, static_cast<char*>(out));
  return cudaGetLastError();
}

cudaError_t EnqueueQuantizeFp8(const void* x, DataType t, int64_t n, int hidden, uint8_t* codes, float* scales,
                               cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int groups = (hidden + 127) / 128;
  Quantize<<<static_cast<unsigned>(n * groups), 128, 0, stream>>>(x, t == DataType::kBF16, hidden, groups, codes,
                                                                  scales);
  return cudaGetLastError();
}

cudaError_t EnqueueDequantizeFp8(const uint8_t* codes, const float* scales, int64_t n, int hidden, DataType t,
                                 void* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  Dequantize<<<Blocks((n * hidden + 255) / 256), 256, 0, stream>>>(codes, scales, n, hidden, (hidden + 127) / 128,
                                                                   t == DataType::kBF16, out);
  return cudaGetLastError();
}

cudaError_t EnqueueSumRows(const void* rows, const int32_t* order, const int32_t* offsets, int64_t tokens, int hidden,
                           DataType t, void* out, cudaStream_t stream) {
  if (tokens <= 0) return cudaSuccess;
  SumRows<<<Blocks(tokens), 256, 0, stream>>>(rows, order, offsets, tokens, hidden, t == DataType::kBF16, out);
  return cudaGetLastError();
}

}  // namespace tandem::comm::moe
