// -----------------------------------------------------------------------------
// File: cuda_local_communicator.h
// -----------------------------------------------------------------------------
//
// The `cuda_local` backend: N virtual ranks on one GPU, for tests and
// benchmarks of multi-rank code with a single device (NCCL refuses two ranks
// on one GPU). Buffers are device memory; each rank has its own stream. Small
// descriptors (device pointers, events, fingerprints) travel between the
// ranks' host threads through a `local` communicator, which also provides the
// deadlines, hung-rank reports and disagreement errors; data moves with
// device-to-device copies and a reduction kernel, ordered with CUDA events.
// No kernel ever waits on another rank, so no launch configuration can
// deadlock the GPU. Reductions run in rank order with the local backend's
// rounding steps: results equal the local backend's bit for bit.
//
// Wait() returns once the operation's device work has finished (polling
// events until the deadline); the rank's stream is ordered after it too.
// While a rank waits it also starts every later operation whose peers have
// posted (enqueues its copies and acknowledges them), as NCCL enqueues a
// batch when it is posted, so schedules that are deadlock-free under NCCL's
// rendezvous semantics are deadlock-free here. Buffers must be device
// memory (host pointers are rejected) and stay untouched until Wait().
// Stream work of the rank that produces a send buffer must be enqueued on
// the rank's stream (CudaLocalStream) before the send is posted.
// Thread safety: as for the local backend, one thread per rank.

#ifndef TANDEM_COMM_CUDA_LOCAL_CUDA_LOCAL_COMMUNICATOR_H_
#define TANDEM_COMM_CUDA_LOCAL_CUDA_LOCAL_COMMUNICATOR_H_

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "comm/communicator.h"

namespace tandem::comm {

// CreateCudaLocalGroup()
//
// `size` virtual ranks on CUDA device `device`, each with a new non-blocking
// stream. kUnavailable when no GPU is visible.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateCudaLocalGroup(int size, int device = 0);

// The stream of a cuda_local rank (nullptr for other backends).
cudaStream_t CudaLocalStream(Communicator& comm);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_CUDA_LOCAL_CUDA_LOCAL_COMMUNICATOR_H_
