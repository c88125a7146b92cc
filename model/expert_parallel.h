// -----------------------------------------------------------------------------
// File: expert_parallel.h
// -----------------------------------------------------------------------------
//
// Expert parallelism for the reference model. Every EP rank holds a full
// copy of the non-expert parameters (they see different tokens, like data
// parallelism) and, per MoE layer, the physical expert slots
// [rank * S / R, (rank + 1) * S / R) of a balance::Placement (S slots, R
// ranks; slot p holds logical expert phy2log[p]). Tokens travel through
// comm::moe Dispatch/Combine: token t of a rank uses, for logical expert e,
// the replica log2phy[e][t mod logcnt[e]].
//
//   DistributeExperts()  keep this rank's slots (from a model holding all)
//   SyncGradients()      sum replicated-parameter gradients over ranks and
//                        the gradients of all replicas of each expert
//   ApplyPlacement()     move to a new placement: expert weights and their
//                        optimizer state travel through the Communicator
//   SaveCheckpointEp(), LoadCheckpointEp()  placement-independent files
//   EpLayoutOf()         a distributed layer's placement, for device paths
//                        (model/cuda) that move the tokens themselves
//
// With the loss normaliser set to the global token count (Target), outputs
// equal the single-rank model's on the same tokens, and synced gradients its
// gradients: bit for bit on one rank; with more ranks the per-token routed
// sum and the gradient sums are grouped by rank, so results differ by f32
// rounding (model/README.md states the measured bound).
//
// All functions are collective over `comm` and must be called by every rank
// in the same order. Thread-compatible.
#ifndef TANDEM_MODEL_EXPERT_PARALLEL_H_
#define TANDEM_MODEL_EXPERT_PARALLEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "balance/placement.h"
#include "comm/communicator.h"
#include "model/model.h"
#include "model/optimizer.h"

namespace tandem::model {

struct EpOptions {
  absl::Duration timeout = absl::Seconds(60);  // per collective
};

// DistributeExperts()
//
// `model` holds every logical expert locally (freshly created, or loaded
// from a checkpoint); afterwards it holds this rank's slots of `placement`
// (copies of the experts, with their optimizer state) and routes tokens
// through `comm`, which must outlive the model. kInvalidArgument when the
// placement does not fit (layers = MoE layers, experts = num_experts, slots
// divisible by comm.size(); see balance::ValidatePlacement) or the model is
// already distributed.
absl::Status DistributeExperts(Model& model, comm::Communicator& comm, const balance::Placement& placement,
                               const EpOptions& options = {});

// ApplyPlacement()
//
// Moves a distributed model to `placement`: each newly needed expert comes
// from a local copy if there is one, else from the rank holding its first
// replica under the old placement (weights and optimizer state, bit-exact).
// Gradients of moved experts are zero: call between steps. Errors as
// DistributeExperts(), or the Communicator's.
absl::Status ApplyPlacement(Model& model, comm::Communicator& comm, const balance::Placement& placement,
                            const EpOptions& options = {});

// SyncGradients()
//
// All-reduces (sums, in rank order) the gradients of the replicated
// parameters, and sets the gradient of every expert replica to the sum over
// all replicas of that logical expert. Call after backward, before the
// optimizer step.
absl::Status SyncGradients(Model& model, comm::Communicator& comm, const EpOptions& options = {});

// EpLayout
//
// One distributed MoE layer's placement as rank `rank` of `ranks` sees it:
// slot p (of num_slots) holds logical expert phy2log[p]; replicas[e] lists
// expert e's slots in replica order. Rank q holds slots
// [q * per_rank, (q + 1) * per_rank).
struct EpLayout {
  int ranks = 0;
  int rank = 0;
  int num_slots = 0;
  int per_rank = 0;
  std::vector<int64_t> phy2log;
  std::vector<std::vector<int64_t>> replicas;
  absl::Duration timeout;  // per collective (EpOptions)

  // The slot each routed (token, k) of idx [T, top_k] goes to: replica
  // t mod count of its expert (the rule of every dispatch here).
  std::vector<int64_t> SlotsOf(absl::Span<const int32_t> idx, int top_k) const;
  int owner(int e) const { return static_cast<int>(replicas[e][0] / per_rank); }
  // The first of rank q's slots holding expert e (0-based on q), or -1.
  int local_slot_of(int q, int e) const;
};

// EpLayoutOf()
//
// The layout of a layer distributed by DistributeExperts() or
// ApplyPlacement(); nullptr when its experts are all local.
const EpLayout* EpLayoutOf(const MoeLayer& layer);

// SaveCheckpointEp(), LoadCheckpointEp()
//
// Save: every logical expert once (from its first replica) gathered to rank
// 0, which writes `path` atomically; every rank returns rank 0's status.
// Load: every rank reads `path` (a shared file system) and takes its own
// experts by logical name; files from single-rank SaveCheckpoint() load too.
absl::Status SaveCheckpointEp(Model& model, const Optimizer* optimizer, comm::Communicator& comm,
                              const std::string& path, const EpOptions& options = {});
absl::Status LoadCheckpointEp(Model& model, Optimizer* optimizer, const std::string& path);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_EXPERT_PARALLEL_H_
