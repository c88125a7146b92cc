#include "comm/emulated/link.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace tandem::comm {

absl::StatusOr<Link> ParseLink(absl::string_view flag, absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  Link link;
  if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &link.latency_us) || !absl::SimpleAtod(parts[1], &link.gbps) ||
      !std::isfinite(link.latency_us) || !std::isfinite(link.gbps) || link.latency_us < 0 || link.gbps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: expected LATENCY_US:GBPS with latency >= 0 and bandwidth > 0 (e.g. 20:25), got '%s'", flag,
                        text.substr(0, 40)));
  }
  return link;
}

}  // namespace tandem::comm
