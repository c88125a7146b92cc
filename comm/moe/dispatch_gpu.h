// -----------------------------------------------------------------------------
// File: dispatch_gpu.h
// -----------------------------------------------------------------------------
//
// Dispatch and combine for GPU backends (cuda_local, nccl): the token rows
// stay in device memory and move with the communicator's all-to-all-v; CUDA
// kernels gather the rows to send, quantize them to FP8 if asked, and sum the
// returned rows per token in rank order (f32) exactly as the host version
// (dispatch.h) does, so both give the same bits. Routing decisions (top-k
// ids and weights) and the per-row metadata are small and stay on the host.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto d, DispatchGpu(comm, x_dev, DataType::kBF16,
//                                               hidden, routing, {}, stream, deadline));

#ifndef TANDEM_COMM_MOE_DISPATCH_GPU_H_
#define TANDEM_COMM_MOE_DISPATCH_GPU_H_

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "comm/moe/dispatch.h"

namespace tandem::comm::moe {

// A device allocation freed with cudaFree.
struct DeviceBuffer {
  std::shared_ptr<void> ptr;
  int64_t bytes = 0;
  void* get() const { return ptr.get(); }
};
absl::StatusOr<DeviceBuffer> AllocDevice(int64_t bytes);

struct DispatchedGpu {
  int64_t num_rows = 0;
  DeviceBuffer x;                     // [rows x hidden], input dtype, on the device
  std::vector<int32_t> local_expert;  // host, as in Dispatched
  std::vector<float> weights;
  std::vector<int32_t> tokens_per_expert;
  std::vector<int64_t> source;
  Handle handle;
};

// DispatchGpu()
//
// As Dispatch(), with `x` [tokens x hidden] in device memory; kernels run on
// `stream`, which may be another stream than the communicator's: the call
// synchronizes `stream` before the exchange, and returns once the data has
// arrived.
absl::StatusOr<DispatchedGpu> DispatchGpu(Communicator& comm, const void* x, DataType dtype, int hidden,
                                          const Routing& routing, const DispatchOptions& options, cudaStream_t stream,
                                          Deadline deadline);

// DispatchCachedGpu()
//
// As DispatchCached(), with `x` and the rows in device memory (the backward
// of CombineGpu()).
absl::StatusOr<DeviceBuffer> DispatchCachedGpu(Communicator& comm, const Handle& handle, const void* x, DataType dtype,
                                               cudaStream_t stream, Deadline deadline);

// CombineGpu()
//
// As Combine(), with `rows` and the result in device memory. `rows` may be
// written by work on `stream`: the call waits for it first.
absl::StatusOr<DeviceBuffer> CombineGpu(Communicator& comm, const Handle& handle, const void* rows, DataType dtype,
                                        cudaStream_t stream, Deadline deadline);

}  // namespace tandem::comm::moe

#endif  // TANDEM_COMM_MOE_DISPATCH_GPU_H_
