// -----------------------------------------------------------------------------
// File: mesh.h
// -----------------------------------------------------------------------------
//
// The rank mesh of a training job: `pp` pipeline ranks, each stage
// replicated over `dp` data-parallel ranks (they see different samples and
// hold the same dense parameters). The data-parallel ranks of a pipeline
// rank form dp / ep expert-parallel groups of `ep` ranks: inside a group the
// experts are sharded (EPLB's placement), and the groups hold the same
// placement. World rank w = pp_rank * dp + dp_rank, dp_rank = group * ep +
// ep_rank.
//
// MakeMesh() splits the world into the sub-communicators a step needs: the
// rank's pipeline (its dp_rank across every pp_rank), its EP group, the
// rank's counterparts in the other EP groups (same pp_rank and ep_rank:
// where dense and expert gradients are summed across groups) and, for
// two-direction schedules (DualPipe), the pair of pipeline ranks r and
// pp-1-r that hold the same two stages. Collective over `world`.
#ifndef TANDEM_TRAIN_MESH_H_
#define TANDEM_TRAIN_MESH_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/deadline.h"
#include "comm/communicator.h"

namespace tandem::train {

struct MeshShape {
  int pp = 1;
  int dp = 1;
  int ep = 1;  // divides dp
};

// CheckMeshShape()
//
// kInvalidArgument naming the bad value when a degree is < 1, ep does not
// divide dp, or pp * dp != world_size.
absl::Status CheckMeshShape(const MeshShape& shape, int world_size);

struct Mesh {
  MeshShape shape;
  int pp_rank = 0;
  int dp_rank = 0;
  int ep_rank = 0;                              // dp_rank % ep
  int ep_group = 0;                             // dp_rank / ep
  comm::Communicator* world = nullptr;          // not owned
  std::unique_ptr<comm::Communicator> pipe;     // size pp, ranked by pp_rank
  std::unique_ptr<comm::Communicator> experts;  // size ep, ranked by ep_rank
  std::unique_ptr<comm::Communicator> groups;   // size dp / ep, ranked by ep_group
  std::unique_ptr<comm::Communicator> pair;     // two directions only: ranks r, pp-1-r
  // With a device world (cuda_local): the pipeline and EP group there; the
  // pipeline's activations and the MoE tokens move through these.
  std::unique_ptr<comm::Communicator> device_pipe;
  std::unique_ptr<comm::Communicator> device_experts;
};

// MakeMesh()
//
// Errors of CheckMeshShape(), or kInvalidArgument when `device_world` has
// another size than `world`. `directions` is the schedule's (2 for
// DualPipe: the pair communicator is made).
absl::StatusOr<Mesh> MakeMesh(comm::Communicator& world, comm::Communicator* device_world, const MeshShape& shape,
                              int directions, Deadline deadline);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_MESH_H_
