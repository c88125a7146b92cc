#include "train/mesh.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::train {

absl::StatusOr<Mesh> MakeMesh(comm::Communicator& world, comm::Communicator* device_world, int pp, int ep,
                              int directions, Deadline deadline) {
  if (pp < 1 || ep < 1 || int64_t{pp} * ep != world.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mesh: expected pp x ep = %d world ranks with pp, ep >= 1, got pp %d x ep %d", world.size(), pp, ep));
  }
  if (device_world != nullptr && device_world->size() != world.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mesh: device world has %d ranks, world has %d", device_world->size(), world.size()));
  }
  Mesh m;
  m.pp = pp;
  m.ep = ep;
  m.pp_rank = world.rank() / ep;
  m.ep_rank = world.rank() % ep;
  m.world = &world;
  TANDEM_ASSIGN_OR_RETURN(m.pipe, world.Split(m.ep_rank, m.pp_rank, deadline));
  TANDEM_ASSIGN_OR_RETURN(m.experts, world.Split(m.pp_rank, m.ep_rank, deadline));
  const int pair_color = m.ep_rank * pp + std::min(m.pp_rank, pp - 1 - m.pp_rank);
  TANDEM_ASSIGN_OR_RETURN(
      m.pair, world.Split(directions == 2 ? pair_color : comm::Communicator::kNoColor, m.pp_rank, deadline));
  if (device_world != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(m.device_pipe, device_world->Split(m.ep_rank, m.pp_rank, deadline));
    TANDEM_ASSIGN_OR_RETURN(m.device_experts, device_world->Split(m.pp_rank, m.ep_rank, deadline));
  }
  return m;
}

}  // namespace tandem::train
