// -----------------------------------------------------------------------------
// File: mesh.h
// -----------------------------------------------------------------------------
//
// The rank mesh of a training job: `pp` pipeline ranks, each replicated over
// `ep` expert-parallel ranks that are also the data-parallel replicas (they
// see different tokens, hold the same dense parameters and share the
// experts). World rank w = pp_rank * ep + ep_rank. MakeMesh() splits the
// world into the sub-communicators a step needs: the rank's pipeline (its
// ep_rank across every pp_rank), its EP group (its pp_rank across every
// ep_rank) and, for two-direction schedules (DualPipe), the pair of pipeline
// ranks r and pp-1-r that hold the same two stages. Collective over `world`.
#ifndef TANDEM_TRAIN_MESH_H_
#define TANDEM_TRAIN_MESH_H_

#include <memory>

#include "absl/status/statusor.h"
#include "base/deadline.h"
#include "comm/communicator.h"

namespace tandem::train {

struct Mesh {
  int pp = 1;
  int ep = 1;
  int pp_rank = 0;
  int ep_rank = 0;
  comm::Communicator* world = nullptr;          // not owned
  std::unique_ptr<comm::Communicator> pipe;     // size pp, ranked by pp_rank
  std::unique_ptr<comm::Communicator> experts;  // size ep, ranked by ep_rank
  std::unique_ptr<comm::Communicator> pair;     // two directions only: ranks r, pp-1-r
  // With a device world (cuda_local): the pipeline and EP group there; the
  // pipeline's activations and the MoE tokens move through these.
  std::unique_ptr<comm::Communicator> device_pipe;
  std::unique_ptr<comm::Communicator> device_experts;
};

// MakeMesh()
//
// kInvalidArgument when pp or ep is < 1 or world.size() != pp * ep (naming
// both), or when `device_world` has another size. `directions` is the
// schedule's (2 for DualPipe: the pair communicator is made).
absl::StatusOr<Mesh> MakeMesh(comm::Communicator& world, comm::Communicator* device_world, int pp, int ep,
                              int directions, Deadline deadline);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_MESH_H_
