// -----------------------------------------------------------------------------
// File: reduce_kernel.h
// -----------------------------------------------------------------------------
//
// Device kernels of the cuda_local backend, callable from host code. No
// kernel waits on another rank: ordering between virtual ranks is done with
// events on the host side, so no configuration can deadlock on the GPU.

#ifndef TANDEM_COMM_CUDA_LOCAL_REDUCE_KERNEL_H_
#define TANDEM_COMM_CUDA_LOCAL_REDUCE_KERNEL_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "comm/types.h"

namespace tandem::comm::cuda {

inline constexpr int kMaxRanks = 64;

// Pointers to the same slice in every rank's buffer.
struct SliceSet {
  const void* in[kMaxRanks];
  void* out[kMaxRanks];
  int ranks;
};

// Enqueues: for i < count, v = in[0][i]; v = op(v, in[r][i]) for r = 1..ranks-1
// (16-bit types computed in f32 and rounded after every step, as the local
// backend does); kAvg divides by ranks at the end; v is written to
// out[r][i] for every r. `t` must not be kBytes.
cudaError_t EnqueueReduceToAll(const SliceSet& slices, int64_t count, DataType t, ReduceOp op, cudaStream_t stream);

}  // namespace tandem::comm::cuda

#endif  // TANDEM_COMM_CUDA_LOCAL_REDUCE_KERNEL_H_
