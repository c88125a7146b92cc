// -----------------------------------------------------------------------------
// File: nccl_communicator.h
// -----------------------------------------------------------------------------
//
// The `nccl` backend: one NCCL communicator per process (one GPU per rank),
// bootstrapped through a Store: rank 0 creates the unique id, every rank reads
// it. Before NCCL is initialised, every rank publishes its host and GPU UUID,
// so two ranks on one GPU (which NCCL rejects) get a clear error pointing to
// the cuda_local backend. The communicator is non-blocking: every wait polls
// the CUDA event of the operation and ncclCommGetAsyncError until its
// deadline; a timeout aborts the communicator (later operations fail) and
// names the operation, its sequence number and its peers, with the flight
// recorder. SendRecv batches are one ncclGroupStart/End group. With
// `debug_fingerprints`, ranks compare (op, dtype, count, sequence) through
// the store before each collective.
//
// Running on a cluster: start one process per GPU with tools/launch.sh,
// torchrun or mpirun (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT or
// OMPI_COMM_WORLD_*), bootstrap with BootstrapFromEnv(), then
// CreateNcclCommunicator(store, rank, size, {.device = local_rank}).

#ifndef TANDEM_COMM_NCCL_NCCL_COMMUNICATOR_H_
#define TANDEM_COMM_NCCL_NCCL_COMMUNICATOR_H_

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "comm/communicator.h"
#include "comm/store/store.h"

namespace tandem::comm {

struct NcclOptions {
  int device = 0;
  std::string prefix = "nccl/";  // store key namespace, equal on all ranks
  bool debug_fingerprints = false;
  absl::Duration init_timeout = absl::Minutes(5);
};

// CreateNcclCommunicator()
//
// Collective over the `size` ranks sharing `store` (which must outlive the
// communicator). kUnavailable without a GPU; kFailedPrecondition for a NCCL
// runtime older than 2.18 or two ranks on one GPU.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Store* store, int rank, int size,
                                                                     const NcclOptions& options);

// The stream a nccl rank's operations run on (nullptr for other backends).
cudaStream_t NcclStream(Communicator& comm);

// The NCCL runtime version as major*10000 + minor*100 + patch, or 0.
int NcclRuntimeVersion();

}  // namespace tandem::comm

#endif  // TANDEM_COMM_NCCL_NCCL_COMMUNICATOR_H_
