// -----------------------------------------------------------------------------
// File: link.h
// -----------------------------------------------------------------------------
//
// A network link as the emulated network and the simulator's phase model
// see it: a latency, and a bandwidth at which a rank's egress sends bytes.
// A transfer of B bytes occupies the egress for B / bandwidth and arrives
// latency later.
#ifndef TANDEM_COMM_EMULATED_LINK_H_
#define TANDEM_COMM_EMULATED_LINK_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::comm {

struct Link {
  double latency_us = 0;
  double gbps = 0;  // 1e9 bytes per second; 0: unlimited

  // Microseconds on the wire for `bytes` (the egress is busy this long).
  double SerializationUs(int64_t bytes) const { return gbps > 0 ? static_cast<double>(bytes) / (gbps * 1e3) : 0; }
};

// ParseLink()
//
// "LATENCY_US:GBPS", e.g. "20:25"; kInvalidArgument naming `flag` for
// anything else, negative or non-finite values, or a zero bandwidth.
absl::StatusOr<Link> ParseLink(absl::string_view flag, absl::string_view text);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_EMULATED_LINK_H_
