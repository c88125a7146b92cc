#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "comm/cuda_local/reduce_kernel.h"

namespace tandem::comm::cuda {
namespace {

template <typename T>
struct Acc {
  using type = T;
  __device__ static T Load(const void* p, int64_t i) { return static_cast<const T*>(p)[i]; }
  __device__ static void Store(void* p, int64_t i, T v) { static_cast<T*>(p)[i] = v; }
  __device__ static T Round(T v) { return v; }
};

template <>
struct Acc<__nv_bfloat16> {
  using type = float;
  __device__ static float Load(const void* p, int64_t i) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
  __device__ static void Store(void* p, int64_t i, float v) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
  __device__ static float Round(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
};

template <>
struct Acc<__half> {
  using type = float;
  __device__ static float Load(const void* p, int64_t i) { return __half2float(static_cast<const __half*>(p)[i]); }
  __device__ static void Store(void* p, int64_t i, float v) { static_cast<__half*>(p)[i] = __float2half_rn(v); }
  __device__ static float Round(float v) { return __half2float(__float2half_rn(v)); }
};

template <typename T>
__global__ void ReduceToAll(SliceSet s, int64_t count, ReduceOp op) {
  using A = Acc<T>;
  using V = typename A::type;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    V v = A::Load(s.in[0], i);
    for (int r = 1; r < s.ranks; ++r) {
      const V x = A::Load(s.in[r], i);
      // The same rounding steps as the host's ReduceInto.
      v = A::Round(op == ReduceOp::kMax ? (x > v ? x : v) : op == ReduceOp::kMin ? (x < v ? x : v) : v + x);
    }
    if (op == ReduceOp::kAvg) v = A::Round(v / static_cast<V>(s.ranks));
    for (int r = 0; r < s.ranks; ++r) A::Store(s.out[r], i, v);
  }
}

}  // namespace

cudaError_t EnqueueReduceToAll(const SliceSet& slices, int64_t count, DataType t, ReduceOp op, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  const int threads = 256;
  const int blocks = static_cast<int>((count + threads - 1) / threads < 1024 ? (count + threads - 1) / threads : 1024);
  switch (t) {
    case DataType::kF32:
      ReduceToAll<float><<<blocks, threads, 0, stream>>>(slices, count, op);
      break;
    case DataType::kBF16:
      ReduceToAll<__nv_bfloat16><<<blocks, threads, 0, stream>>>(slices, count, op);
      break;
    case DataType::kF16:
      ReduceToAll<__half><<<blocks, threads, 0, stream>>>(slices, count, op);
      break;
    case DataType::kI32:
      ReduceToAll<int32_t><<<blocks, threads, 0, stream>>>(slices, count, op);
      break;
    case DataType::kI64:
      ReduceToAll<long long><<<blocks, threads, 0, stream>>>(slices, count, op);
      break;
    case DataType::kBytes:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tandem::comm::cuda
