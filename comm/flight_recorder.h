// -----------------------------------------------------------------------------
// File: flight_recorder.h
// -----------------------------------------------------------------------------
//
// A small ring of a rank's last operations (posted and completed, with
// sequence numbers and peers), dumped into timeout errors so that the stuck
// pair of ranks is visible at a glance. Thread-safe.

#ifndef TANDEM_COMM_FLIGHT_RECORDER_H_
#define TANDEM_COMM_FLIGHT_RECORDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace tandem::comm {

class FlightRecorder {
 public:
  explicit FlightRecorder(int capacity = 16) : capacity_(capacity) {}

  // Records that operation `what` (e.g. "all_reduce f32 x1024" or "send to 3")
  // with sequence `seq` was posted or completed.
  void Posted(int64_t seq, const std::string& what);
  void Completed(int64_t seq);

  // "last ops on rank R: seq 40 all_reduce ... completed; seq 41 ... posted".
  std::string Dump(int rank) const;

 private:
  struct Entry {
    int64_t seq;
    std::string what;
    bool completed;
  };
  const int capacity_;
  mutable absl::Mutex mu_;
  std::vector<Entry> ring_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tandem::comm

#endif  // TANDEM_COMM_FLIGHT_RECORDER_H_
