#include "comm/communicator.h"

#include "absl/strings/str_format.h"

namespace tandem::comm {

absl::Status PostAndWait(WorkOr work, Deadline deadline) {
  if (!work.ok()) return work.status();
  return (*work)->Wait(deadline);
}

absl::Status CheckCount(absl::string_view op, int64_t count, const void* data) {
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: count: expected >= 0, got %d", op, count));
  }
  if (count > 0 && data == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: null buffer for %d elements", op, count));
  }
  return absl::OkStatus();
}

absl::Status CheckPeer(absl::string_view op, int peer, int size) {
  if (peer < 0 || peer >= size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: peer: expected a rank in 0..%d, got %d", op, size - 1, peer));
  }
  return absl::OkStatus();
}

absl::Status CheckReducible(absl::string_view op, DataType t) {
  if (t == DataType::kBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: dtype: raw bytes cannot be reduced", op));
  }
  return absl::OkStatus();
}

absl::Status CheckAllToAllV(const void* send, absl::Span<const int64_t> send_counts, const void* recv,
                            absl::Span<const int64_t> recv_counts, int size) {
  if (static_cast<int>(send_counts.size()) != size || static_cast<int>(recv_counts.size()) != size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("all_to_all_v: counts: expected %d entries (one per rank), got %d and %d", size,
                        send_counts.size(), recv_counts.size()));
  }
  for (int p = 0; p < size; ++p) {
    if (absl::Status s = CheckCount(absl::StrFormat("all_to_all_v send to %d", p), send_counts[p], send); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckCount(absl::StrFormat("all_to_all_v recv from %d", p), recv_counts[p], recv); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem::comm
