#include "comm/flight_recorder.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::comm {

void FlightRecorder::Posted(int64_t seq, const std::string& what) {
  absl::MutexLock lock(&mu_);
  Entry e{seq, what, false};
  if (static_cast<int>(ring_.size()) < capacity_) {
    ring_.push_back(std::move(e));
  } else {
    ring_[next_ % capacity_] = std::move(e);
  }
  ++next_;
}

void FlightRecorder::Completed(int64_t seq) {
  absl::MutexLock lock(&mu_);
  for (Entry& e : ring_) {
    if (e.seq == seq) e.completed = true;
  }
}

std::string FlightRecorder::Dump(int rank) const {
  absl::MutexLock lock(&mu_);
  std::string out = absl::StrFormat("last ops on rank %d:", rank);
  const int64_t n = static_cast<int64_t>(ring_.size());
  const int64_t first = next_ - n;
  for (int64_t i = first; i < next_; ++i) {
    const Entry& e = ring_[i % capacity_];
    absl::StrAppend(&out, absl::StrFormat(" [seq %d %s: %s]", e.seq, e.what, e.completed ? "completed" : "posted"));
  }
  return out;
}

}  // namespace tandem::comm
