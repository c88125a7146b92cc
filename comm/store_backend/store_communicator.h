// -----------------------------------------------------------------------------
// File: store_communicator.h
// -----------------------------------------------------------------------------
//
// The `store` backend: ranks in separate processes (or threads) that share
// only a Store, typically the TCP store of rendezvous.h. Every message and
// every collective contribution travels through the store, so it is a
// functional multi-process CPU backend for tests, tools and the executor's
// process runs, not a fast one. Deterministic: reductions run in rank order,
// so every rank gets the same bits as the local backend. Messages wait in the
// store; a send completes when its receiver acknowledges it. Each
// contribution carries the operation's fingerprint, so ranks calling
// different operations get kInvalidArgument.
//
// Progress: posting an operation writes this rank's contribution (or
// message) to the store at once, so peers can complete their side while this
// rank computes; Wait() fetches what the others wrote and completes this
// rank's operations in posting order. Nothing runs on a background thread of
// the communicator; one thread at a time per communicator.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Bootstrap b, BootstrapFromEnv(deadline));
//   StoreCommunicator comm(b.store.get(), b.info.rank, b.info.world_size);

#ifndef TANDEM_COMM_STORE_BACKEND_STORE_COMMUNICATOR_H_
#define TANDEM_COMM_STORE_BACKEND_STORE_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/store/store.h"

namespace tandem::comm {

// A communicator of `size` ranks over `store`, which must outlive it and every
// communicator split from it unless `keepalive` owns it. All ranks use the
// same `prefix`.
std::unique_ptr<Communicator> MakeStoreCommunicator(Store* store, int rank, int size,
                                                    const std::string& prefix = "tandem/",
                                                    std::shared_ptr<void> keepalive = nullptr);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_STORE_BACKEND_STORE_COMMUNICATOR_H_
