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

}  // namespace tandem::comm
