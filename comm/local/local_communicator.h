// -----------------------------------------------------------------------------
// File: local_communicator.h
// -----------------------------------------------------------------------------
//
// The `local` backend: N ranks as threads of one process, sharing memory.
// Deterministic: reductions run in rank order 0..N-1 (every rank gets the
// same bits), messages match in posting order. Each rank pulls its own
// inputs, so ranks copy in parallel. Operation fingerprints (op, dtype,
// count, sequence) are always compared: ranks calling different operations
// get kInvalidArgument on every rank.
//
// Progress: an operation moves its data as soon as every rank involved has
// posted it, whether or not anyone waits (as NCCL does once everything is
// enqueued): the rank that posts last does the copying for the ranks that
// are not inside Wait() (a point-to-point message: the side that posts
// second); ranks already waiting copy their own share, so ranks that wait
// together copy in parallel. Wait() returns once every rank's share is done.
// So a rank can post an exchange and compute while it completes.
//
// Thread safety: rank r's communicator and its Work handles belong to one
// thread at a time; different ranks run on different threads (a rank's
// posts may copy into other ranks' posted receive buffers, which the API
// leaves untouched until Wait()).
//
// Example:
//   std::vector<std::unique_ptr<Communicator>> comms = CreateLocalGroup(4);
//   // thread r: Run(comms[r]->AllReduce(...), Deadline::In(absl::Seconds(30)));

#ifndef TANDEM_COMM_LOCAL_LOCAL_COMMUNICATOR_H_
#define TANDEM_COMM_LOCAL_LOCAL_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace tandem::comm {

// One communicator per rank of a new group of `size` (>= 1) thread ranks.
std::vector<std::unique_ptr<Communicator>> CreateLocalGroup(int size);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_LOCAL_LOCAL_COMMUNICATOR_H_
