// -----------------------------------------------------------------------------
// File: emulated_network.h
// -----------------------------------------------------------------------------
//
// A network model in front of any Communicator backend: every operation
// still moves its bytes through the wrapped backend (results are
// identical), but completes no earlier than the model says a network of
// the given links would finish it. On one host this makes communication
// take time that compute can hide, as a cluster's would.
//
// The model, per operation:
//  - a transfer of B bytes from world rank s to d takes latency + B /
//    bandwidth of the link between them: `same_node` inside a node (a node
//    holds ranks_per_node consecutive world ranks) and `other_node` (or
//    `between_nodes(s, d)`) across nodes; a rank's transfers to itself are
//    free;
//  - a collective's transfers start when its last participant has posted it
//    (a point-to-point message when both its send and its receive are
//    posted), as the simulator assumes;
//  - each rank has one egress, served first come first served: a transfer
//    starts when the egress is free and occupies it for B / bandwidth;
//  - an operation completes, for a rank, when every transfer it sends or
//    receives has arrived. Bytes per collective: all-to-all(-v) its blocks to
//    each peer; all-reduce 2(n-1)/n of the data to the next rank (ring);
//    all-gather and reduce-scatter (n-1) blocks to the next rank; broadcast
//    the data from the root to every rank; barrier 0 bytes to every rank
//    (latency only). Split is not modeled.
//
// Errors are the wrapped backend's, so deadlines and the flight recorder
// name the real operation and the ranks it waits for; a modeled completion
// beyond the deadline is kDeadlineExceeded naming the operation.
//
// Thread safety: as the wrapped backend (one thread per rank's
// communicator). The emulated ranks share one EmulatedNetwork, so they are
// ranks of one process (threads), over any backend.
//
// Example:
//   EmulatedNetwork net({.ranks_per_node = 1, .other_node = {20, 25}});
//   std::vector<std::unique_ptr<Communicator>> world = net.Wrap(CreateLocalGroup(8));
#ifndef TANDEM_COMM_EMULATED_EMULATED_NETWORK_H_
#define TANDEM_COMM_EMULATED_EMULATED_NETWORK_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comm/communicator.h"
#include "comm/emulated/link.h"

namespace tandem::comm {

struct NetworkModel {
  int ranks_per_node = 1;  // world ranks [k * n, (k + 1) * n) form node k
  Link same_node;          // default: free
  Link other_node;
  // When set, the link between world ranks on different nodes (instead of
  // other_node), e.g. by the kind of traffic between them.
  std::function<Link(int src, int dst)> between_nodes;
};

// One completed operation of a rank, as modeled.
struct ModeledOp {
  std::string group;                             // "world", or the world's split path ("world/s0c1")
  std::string name;                              // e.g. "all_to_all_v 4096 B"
  std::chrono::steady_clock::time_point posted;  // this rank posted it
  std::chrono::steady_clock::time_point ready;   // its last participant posted it
  std::chrono::steady_clock::time_point end;     // modeled completion on this rank
  // Its modeled time alone: end - ready had every egress been free at
  // ready (no queueing behind other operations), what the simulator's
  // phase model charges for it.
  double alone_us = 0;

  double modeled_us() const { return std::chrono::duration<double, std::micro>(end - ready).count(); }
};

class EmulatedNetwork {
 public:
  explicit EmulatedNetwork(NetworkModel model);
  ~EmulatedNetwork();

  // EmulatedNetwork::Wrap()
  //
  // Wraps every rank of a world group (world rank = the communicator's rank).
  // The communicators, and those split from them, share this network's
  // state (and keep it alive).
  std::vector<std::unique_ptr<Communicator>> Wrap(std::vector<std::unique_ptr<Communicator>> world);

  // The link a transfer from world rank `src` to `dst` takes.
  Link LinkBetween(int src, int dst) const;

  // EmulatedNetwork::Log()
  //
  // The operations world rank `rank` completed (waited for), in order.
  std::vector<ModeledOp> Log(int rank) const;

  struct Fabric;

 private:
  std::shared_ptr<Fabric> fabric_;
};

}  // namespace tandem::comm

#endif  // TANDEM_COMM_EMULATED_EMULATED_NETWORK_H_
