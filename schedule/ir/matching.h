// -----------------------------------------------------------------------------
// File: matching.h
// -----------------------------------------------------------------------------
//
// Message matching in a lowered schedule: on every directed rank pair the
// k-th send matches the k-th receive (NCCL and PyTorch match by posting
// order; tags are ignored). Actions get global ids: rank r's action i is
// offset[r] + i.

#ifndef TANDEM_SCHEDULE_IR_MATCHING_H_
#define TANDEM_SCHEDULE_IR_MATCHING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

struct MessageIndex {
  std::vector<int64_t> offset;   // ranks + 1 entries
  std::vector<int32_t> partner;  // global id of the matching op; -1: compute
  std::vector<int32_t> rank_of;  // rank of each global id

  int64_t size() const { return offset.back(); }
};

// MatchMessages()
//
// Pairs sends with receives. kInvalidArgument for a peer out of range or
// equal to the rank, and for an unmatched send or receive, naming it as
// "rank R position P (ACTION): send #k to rank Q has no matching receive
// (rank Q receives N from rank R)".
absl::StatusOr<MessageIndex> MatchMessages(const Schedule& s);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_IR_MATCHING_H_
