#include "schedule/ir/matching.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace tandem::schedule {

absl::StatusOr<MessageIndex> MatchMessages(const Schedule& s) {
  const int ranks = s.ranks;
  MessageIndex m;
  m.offset.assign(ranks + 1, 0);
  for (int r = 0; r < ranks; ++r) m.offset[r + 1] = m.offset[r] + s.programs[r].actions.size();
  if (m.size() >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrFormat("schedule: %d actions is too many", m.size()));
  }
  m.partner.assign(m.size(), -1);
  m.rank_of.resize(m.size());
  // Counting sort of sends and receives by directed pair (from, to).
  const int64_t pairs = int64_t{ranks} * ranks;
  std::vector<int32_t> send_start(pairs + 1, 0), recv_start(pairs + 1, 0);
  for (int r = 0; r < ranks; ++r) {
    const std::vector<Action>& p = s.programs[r].actions;
    for (int i = 0; i < static_cast<int>(p.size()); ++i) {
      m.rank_of[m.offset[r] + i] = r;
      const Action& a = p[i];
      if (!IsComm(a.op)) continue;
      if (a.peer < 0 || a.peer >= ranks || a.peer == r) {
        return absl::InvalidArgumentError(
            absl::StrFormat("rank %d position %d (%s): peer: expected another rank in 0..%d, got %d", r, i,
                            DescribeAction(s, a), ranks - 1, a.peer));
      }
      if (IsSend(a.op)) {
        ++send_start[int64_t{r} * ranks + a.peer + 1];
      } else {
        ++recv_start[int64_t{a.peer} * ranks + r + 1];
      }
    }
  }
  for (int64_t k = 0; k < pairs; ++k) {
    send_start[k + 1] += send_start[k];
    recv_start[k + 1] += recv_start[k];
  }
  std::vector<int32_t> sends(send_start[pairs]), recvs(recv_start[pairs]);
  std::vector<int32_t> send_fill(send_start.begin(), send_start.end() - 1);
  std::vector<int32_t> recv_fill(recv_start.begin(), recv_start.end() - 1);
  for (int r = 0; r < ranks; ++r) {
    const std::vector<Action>& p = s.programs[r].actions;
    for (int i = 0; i < static_cast<int>(p.size()); ++i) {
      const Action& a = p[i];
      if (!IsComm(a.op)) continue;
      const int32_t id = static_cast<int32_t>(m.offset[r] + i);
      if (IsSend(a.op)) {
        sends[send_fill[int64_t{r} * ranks + a.peer]++] = id;
      } else {
        recvs[recv_fill[int64_t{a.peer} * ranks + r]++] = id;
      }
    }
  }
  for (int64_t k = 0; k < pairs; ++k) {
    const int32_t ns = send_start[k + 1] - send_start[k];
    const int32_t nr = recv_start[k + 1] - recv_start[k];
    for (int32_t j = 0; j < std::min(ns, nr); ++j) {
      const int32_t a = sends[send_start[k] + j], b = recvs[recv_start[k] + j];
      m.partner[a] = b;
      m.partner[b] = a;
    }
    if (ns != nr) {
      const int from = static_cast<int>(k / ranks), to = static_cast<int>(k % ranks);
      const int32_t id = ns > nr ? sends[send_start[k] + nr] : recvs[recv_start[k] + ns];
      const int r = m.rank_of[id];
      const int i = static_cast<int>(id - m.offset[r]);
      return absl::InvalidArgumentError(absl::StrFormat(
          "rank %d position %d (%s): %s #%d %s rank %d has no matching %s (rank %d sends %d messages to rank %d, "
          "which receives %d)",
          r, i, DescribeAction(s, s.programs[r].actions[i]), ns > nr ? "send" : "receive", std::min(ns, nr),
          ns > nr ? "to" : "from", ns > nr ? to : from, ns > nr ? "receive" : "send", from, ns, to, nr));
    }
  }
  return m;
}

}  // namespace tandem::schedule
