// -----------------------------------------------------------------------------
// File: rendezvous.h
// -----------------------------------------------------------------------------
//
// Bootstrap from the environment, torchrun-style: RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT, falling back to Open MPI's
// OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK} and PMI_{RANK,SIZE}, so that mpirun
// works without linking MPI. Rank 0 serves the TCP store on
// MASTER_ADDR:MASTER_PORT; every rank connects to it. Two more variables:
// TANDEM_JOB_TOKEN (the launcher sets a random one per job: the store then
// refuses clients without it) and TANDEM_STORE_TIMEOUT (seconds, default
// 30: how long a rank waits without a word from the store host before it
// reports that host as stopped or dead).
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(Bootstrap b, BootstrapFromEnv(Deadline::In(absl::Seconds(60))));

#ifndef TANDEM_COMM_STORE_RENDEZVOUS_H_
#define TANDEM_COMM_STORE_RENDEZVOUS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/deadline.h"
#include "comm/store/store.h"
#include "comm/store/tcp_store.h"

namespace tandem::comm {

struct RendezvousInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string job_token;                             // TANDEM_JOB_TOKEN
  absl::Duration store_timeout = absl::Seconds(30);  // TANDEM_STORE_TIMEOUT
  // TANDEM_STORE_HOST=launcher: an elastic launcher serves the store
  // (comm/store:store_server) and no rank hosts it; TANDEM_GENERATION: the
  // membership's number (keys of different memberships never meet).
  bool launcher_hosts_store = false;
  int generation = 0;
};

using GetEnv = std::function<const char*(const char*)>;

// ReadRendezvousEnv()
//
// Reads the variables above (`getenv` defaults to the process environment).
// Missing or malformed values give kInvalidArgument naming the variable, e.g.
// "RANK: expected an integer in [0, WORLD_SIZE=4), got '7'".
absl::StatusOr<RendezvousInfo> ReadRendezvousEnv(const GetEnv& getenv = nullptr);

struct Bootstrap {
  RendezvousInfo info;
  std::unique_ptr<TcpStoreServer> server;  // rank 0 only
  std::unique_ptr<Store> store;

  // Finish()
  //
  // Collective: every rank checks out; rank 0 (which serves the store) waits
  // until all have, so that nobody loses the store while still using it.
  absl::Status Finish(Deadline deadline);
};

// Serves (rank 0) and connects to the store described by `info`.
absl::StatusOr<Bootstrap> ConnectRendezvous(const RendezvousInfo& info, Deadline deadline);

// Another client connection to that store, as rank `info.rank` (for a
// thread that must not share the rank's connection, such as a watcher).
absl::StatusOr<std::unique_ptr<TcpStore>> ConnectStore(const RendezvousInfo& info, Deadline deadline);

// ReadRendezvousEnv(), then ConnectRendezvous().
absl::StatusOr<Bootstrap> BootstrapFromEnv(Deadline deadline);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_STORE_RENDEZVOUS_H_
