#include "train/mesh.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::train {

absl::Status CheckMeshShape(const MeshShape& shape, int world_size) {
  if (shape.pp < 1 || shape.dp < 1 || shape.ep < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mesh: expected pp, dp, ep >= 1, got pp %d, dp %d, ep %d", shape.pp, shape.dp, shape.ep));
  }
  if (shape.dp % shape.ep != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mesh: ep %d does not divide dp %d (expert-parallel groups lie inside data parallelism)", shape.ep, shape.dp));
  }
  if (int64_t{shape.pp} * shape.dp != world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mesh: expected pp x dp = %d world ranks, got pp %d x dp %d", world_size, shape.pp, shape.dp));
  }
  return absl::OkStatus();
}

absl::StatusOr<Mesh> MakeMesh(comm::Communicator& world, comm::Communicator* device_world, const MeshShape& shape,
                              int directions, Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckMeshShape(shape, world.size()));
  if (device_world != nullptr && device_world->size() != world.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mesh: device world has %d ranks, world has %d", device_world->size(), world.size()));
  }
  const int pp = shape.pp, dp = shape.dp, ep = shape.ep, groups = dp / ep;
  Mesh m;
  m.shape = shape;
  m.pp_rank = world.rank() / dp;
  m.dp_rank = world.rank() % dp;
  m.ep_rank = m.dp_rank % ep;
  m.ep_group = m.dp_rank / ep;
  m.world = &world;
  const int expert_color = m.pp_rank * groups + m.ep_group;
  const int group_color = m.pp_rank * ep + m.ep_rank;
  TANDEM_ASSIGN_OR_RETURN(m.pipe, world.Split(m.dp_rank, m.pp_rank, deadline));
  TANDEM_ASSIGN_OR_RETURN(m.experts, world.Split(expert_color, m.ep_rank, deadline));
  TANDEM_ASSIGN_OR_RETURN(m.groups, world.Split(group_color, m.ep_group, deadline));
  const int pair_color = m.dp_rank * pp + std::min(m.pp_rank, pp - 1 - m.pp_rank);
  TANDEM_ASSIGN_OR_RETURN(
      m.pair, world.Split(directions == 2 ? pair_color : comm::Communicator::kNoColor, m.pp_rank, deadline));
  if (device_world != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(m.device_pipe, device_world->Split(m.dp_rank, m.pp_rank, deadline));
    TANDEM_ASSIGN_OR_RETURN(m.device_experts, device_world->Split(expert_color, m.ep_rank, deadline));
  }
  return m;
}

}  // namespace tandem::train
