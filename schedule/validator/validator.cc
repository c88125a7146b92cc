#include "schedule/validator/validator.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "schedule/ir/messages.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {
namespace {

// A stage copy: (direction, stage).
int64_t CopyIndex(const Schedule& s, int dir, int stage) {
  return int64_t{dir} * s.stages + stage;
}

class Validator {
 public:
  explicit Validator(const Schedule& s) : s_(s) {}

  absl::Status Run() {
    TANDEM_RETURN_IF_ERROR(CheckShape(s_));
    const int64_t cells = int64_t{s_.directions} * s_.stages * s_.microbatches_per_direction();
    if (cells > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "schedule: %d stage copies x micro-batches is too large", cells));
    }
    // Per (copy, mb): position (rank-local) of F, of B-or-I, of I, of W.
    f_.assign(cells, -1);
    bi_.assign(cells, -1);
    i_.assign(cells, -1);
    w_.assign(cells, -1);
    if (s_.lowered) {
      rf_.assign(cells, -1);
      rb_.assign(cells, -1);
    }
    for (int r = 0; r < s_.ranks; ++r) {
      const std::vector<Action>& p = s_.programs[r].actions;
      for (int k = 0; k < static_cast<int>(p.size()); ++k) {
        TANDEM_RETURN_IF_ERROR(CheckAction(r, k));
      }
    }
    TANDEM_RETURN_IF_ERROR(CheckCounts());
    if (s_.lowered) {
      TANDEM_ASSIGN_OR_RETURN(const MessageIndex m, MatchMessages(s_));
      TANDEM_RETURN_IF_ERROR(CheckComm(m));
      // Any wait cycle under rendezvous semantics is a deadlock.
      return CheckRendezvous(s_, m);
    }
    return CheckDataflow();
  }

 private:
  std::string Where(int r, int k) const {
    const std::vector<Action>& p = s_.programs[r].actions;
    return absl::StrFormat("rank %d position %d (%s)", r, k,
                           k < static_cast<int>(p.size()) ? DescribeAction(s_, p[k]) : "end");
  }
  // Error with the neighbourhood of the action.
  absl::Status Error(int r, int k, absl::string_view what) const {
    std::string context;
    const std::vector<Action>& p = s_.programs[r].actions;
    for (int j = std::max(0, k - 3); j < std::min<int>(p.size(), k + 4); ++j) {
      absl::StrAppend(&context, "\n  ", j == k ? ">" : " ", " [", j, "] ", DescribeAction(s_, p[j]));
    }
    return absl::InvalidArgumentError(absl::StrCat(Where(r, k), ": ", what, context));
  }

  int64_t Cell(int dir, int stage, int mb) const {
    return CopyIndex(s_, dir, stage) * s_.microbatches_per_direction() + mb;
  }

  absl::Status CheckPart(int r, int k, int stage, int mb, int dir) const {
    if (stage < 0 || stage >= s_.stages) {
      return Error(r, k, absl::StrFormat("stage: expected 0..%d, got %d", s_.stages - 1, stage));
    }
    if (dir < 0 || dir >= s_.directions) {
      return Error(r, k, absl::StrFormat("direction: expected 0..%d, got %d", s_.directions - 1, dir));
    }
    if (mb < 0 || mb >= s_.microbatches_per_direction()) {
      return Error(r, k, absl::StrFormat("micro-batch: expected 0..%d, got %d",
                                         s_.microbatches_per_direction() - 1, mb));
    }
    return absl::OkStatus();
  }

  absl::Status Record(int r, int k, Op op, int stage, int mb, int dir) {
    if (s_.RankOf(dir, stage) != r) {
      return Error(r, k, absl::StrFormat("stage %d direction %d is placed on rank %d, not here",
                                         stage, dir, s_.RankOf(dir, stage)));
    }
    const int64_t c = Cell(dir, stage, mb);
    auto once = [&](std::vector<int>& v, absl::string_view name) -> absl::Status {
      if (v[c] >= 0) {
        return Error(r, k, absl::StrFormat("%s of this micro-batch already ran at position %d", name, v[c]));
      }
      v[c] = k;
      return absl::OkStatus();
    };
    switch (op) {
      case Op::kForward:
        return once(f_, "forward");
      case Op::kBackward:
      case Op::kBackwardInput:
        if (f_[c] < 0) return Error(r, k, "backward before its forward: expected F of the same stage and micro-batch earlier on this rank");
        if (op == Op::kBackwardInput) TANDEM_RETURN_IF_ERROR(once(i_, "input backward"));
        return once(bi_, "backward");
      case Op::kBackwardWeight:
        if (i_[c] < 0) return Error(r, k, "weight gradient before its input backward: expected I of the same stage and micro-batch earlier on this rank");
        return once(w_, "weight gradient");
      default:
        return absl::OkStatus();
    }
  }

  absl::Status CheckAction(int r, int k) {
    const Action& a = s_.programs[r].actions[k];
    if (static_cast<int>(a.op) > static_cast<int>(Op::kRecvB)) return Error(r, k, "unknown op");
    TANDEM_RETURN_IF_ERROR(CheckPart(r, k, a.stage, a.mb, a.direction));
    if (IsComm(a.op)) {
      if (!s_.lowered) return Error(r, k, "send or receive in a compute-only program");
      const bool towards_next = a.op == Op::kSendF || a.op == Op::kRecvB;
      const int other = towards_next ? a.stage + 1 : a.stage - 1;
      if (other < 0 || other >= s_.stages) {
        return Error(r, k, absl::StrFormat("no stage %d to exchange with", other));
      }
      if (s_.RankOf(a.direction, a.stage) != r) {
        return Error(r, k, absl::StrFormat("stage %d is placed on rank %d, not here", a.stage,
                                           s_.RankOf(a.direction, a.stage)));
      }
      const int peer = s_.RankOf(a.direction, other);
      if (a.peer != peer) {
        return Error(r, k, absl::StrFormat("peer: expected rank %d (holder of stage %d), got %d", peer, other, a.peer));
      }
      if (a.batch < 0 || a.batch >= static_cast<int>(s_.programs[r].batches.size())) {
        return Error(r, k, absl::StrFormat("batch: expected 0..%d, got %d",
                                           static_cast<int>(s_.programs[r].batches.size()) - 1, a.batch));
      }
      if (IsRecv(a.op)) {
        int& at = (a.op == Op::kRecvF ? rf_ : rb_)[Cell(a.direction, a.stage, a.mb)];
        if (at >= 0) return Error(r, k, absl::StrFormat("received twice (first at position %d)", at));
        at = k;
      }
      return absl::OkStatus();
    }
    if (a.op == Op::kForwardBackward) {
      TANDEM_RETURN_IF_ERROR(CheckPart(r, k, a.stage_b, a.mb_b, a.direction_b));
      TANDEM_RETURN_IF_ERROR(Record(r, k, Op::kForward, a.stage, a.mb, a.direction));
      return Record(r, k, Op::kBackward, a.stage_b, a.mb_b, a.direction_b);
    }
    return Record(r, k, a.op, a.stage, a.mb, a.direction);
  }

  absl::Status CheckCounts() const {
    const int m = s_.microbatches_per_direction();
    for (int d = 0; d < s_.directions; ++d) {
      for (int stage = 0; stage < s_.stages; ++stage) {
        for (int mb = 0; mb < m; ++mb) {
          const int64_t c = Cell(d, stage, mb);
          const char* missing = f_[c] < 0 ? "forward" : bi_[c] < 0 ? "backward (B or I)"
                                : (i_[c] >= 0 && w_[c] < 0) ? "weight gradient (W) after its I" : nullptr;
          if (missing != nullptr) {
            const int r = s_.RankOf(d, stage);
            return absl::InvalidArgumentError(absl::StrFormat(
                "rank %d: stage %d direction %d micro-batch %d has no %s (each stage needs %d "
                "forwards, %d backwards and one W per I)",
                r, stage, d, mb, missing, m, m));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  // One pass: sends match their receives (k-th with k-th on every directed
  // pair) and follow their producer; receives precede and are waited on
  // before their consumer; every cross-rank input is received.
  absl::Status CheckComm(const MessageIndex& m) const {
    std::vector<int> sent(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) {
      const RankProgram& p = s_.programs[r];
      std::fill(sent.begin(), sent.end(), 0);
      for (int k = 0; k < static_cast<int>(p.actions.size()); ++k) {
        const Action& a = p.actions[k];
        if (IsCompute(a.op)) {
          if (a.op == Op::kForward || a.op == Op::kForwardBackward) {
            TANDEM_RETURN_IF_ERROR(Received(r, k, Op::kRecvF, a.stage, a.mb, a.direction, a.stage - 1));
          }
          if (IsInputBackward(a.op)) {
            TANDEM_RETURN_IF_ERROR(Received(r, k, Op::kRecvB, a.stage, a.mb, a.direction, a.stage + 1));
          }
          if (a.op == Op::kForwardBackward) {
            TANDEM_RETURN_IF_ERROR(Received(r, k, Op::kRecvB, a.stage_b, a.mb_b, a.direction_b, a.stage_b + 1));
          }
          continue;
        }
        const int64_t c = Cell(a.direction, a.stage, a.mb);
        if (IsSend(a.op)) {
          const int n = sent[a.peer]++;
          const int32_t partner = m.partner[m.offset[r] + k];
          const int q = m.rank_of[partner];
          const int qk = static_cast<int>(partner - m.offset[q]);
          const Action& rcv = s_.programs[q].actions[qk];
          const bool fwd = a.op == Op::kSendF;
          const Action want = Action::Comm(fwd ? Op::kRecvF : Op::kRecvB, fwd ? a.stage + 1 : a.stage - 1, a.mb,
                                           a.direction, r, rcv.batch);
          if (rcv != want) {
            return Error(q, qk, absl::StrFormat(
                "receive #%d from rank %d does not match send #%d there: expected %s, sent by rank %d position %d "
                "(%s)",
                n, r, n, DescribeAction(s_, want), r, k, DescribeAction(s_, a)));
          }
          if (fwd && (f_[c] < 0 || f_[c] > k)) {
            return Error(r, k, "send of an activation before its forward ran on this rank");
          }
          if (!fwd && (bi_[c] < 0 || bi_[c] > k)) {
            return Error(r, k, "send of a gradient before its backward ran on this rank");
          }
          continue;
        }
        const int consumer = a.op == Op::kRecvF ? f_[c] : bi_[c];
        if (consumer >= 0 && consumer < k) {
          return Error(r, k, absl::StrFormat("received after its consumer at position %d", consumer));
        }
        const int wait = p.batches[a.batch].wait_before;
        if (consumer >= 0 && wait > consumer) {
          return Error(r, k, absl::StrFormat("waited on at position %d, after its consumer at position %d", wait,
                                             consumer));
        }
      }
    }
    return absl::OkStatus();
  }

  // An input of the action at (r, k) that comes from stage `from` on another
  // rank must have been received earlier.
  absl::Status Received(int r, int k, Op recv, int stage, int mb, int dir, int from) const {
    if (from < 0 || from >= s_.stages || s_.RankOf(dir, from) == r) return absl::OkStatus();
    const int at = (recv == Op::kRecvF ? rf_ : rb_)[Cell(dir, stage, mb)];
    if (at >= 0 && at < k) return absl::OkStatus();
    const int peer = s_.RankOf(dir, from);
    return Error(r, k, absl::StrFormat("input from rank %d never received: expected %s earlier", peer,
                                       DescribeAction(s_, Action::Comm(recv, stage, mb, dir, peer, -1))));
  }

  // Compute-only: run the ranks with unbounded buffers; an action runs once
  // its cross-rank inputs exist. Stuck ranks mean no order exists.
  absl::Status CheckDataflow() const {
    std::vector<char> fdone(f_.size(), 0), bdone(f_.size(), 0);
    std::vector<int> pos(s_.ranks, 0);
    auto ready_f = [&](int stage, int mb, int dir) {
      return stage == 0 || fdone[Cell(dir, stage - 1, mb)];
    };
    auto ready_b = [&](int stage, int mb, int dir) {
      return stage == s_.stages - 1 || bdone[Cell(dir, stage + 1, mb)];
    };
    bool progress = true;
    while (progress) {
      progress = false;
      for (int r = 0; r < s_.ranks; ++r) {
        const std::vector<Action>& p = s_.programs[r].actions;
        while (pos[r] < static_cast<int>(p.size())) {
          const Action& a = p[pos[r]];
          bool ok = true;
          if (a.op == Op::kForward || a.op == Op::kForwardBackward) ok = ready_f(a.stage, a.mb, a.direction);
          if (IsInputBackward(a.op)) ok = ready_b(a.stage, a.mb, a.direction);
          if (a.op == Op::kForwardBackward) ok = ok && ready_b(a.stage_b, a.mb_b, a.direction_b);
          if (!ok) break;
          if (a.op == Op::kForward || a.op == Op::kForwardBackward) fdone[Cell(a.direction, a.stage, a.mb)] = 1;
          if (IsInputBackward(a.op)) bdone[Cell(a.direction, a.stage, a.mb)] = 1;
          if (a.op == Op::kForwardBackward) bdone[Cell(a.direction_b, a.stage_b, a.mb_b)] = 1;
          ++pos[r];
          progress = true;
        }
      }
    }
    for (int r = 0; r < s_.ranks; ++r) {
      if (pos[r] < static_cast<int>(s_.programs[r].actions.size())) {
        return Error(r, pos[r], "no order runs this: it waits for an input that another rank produces only after "
                                "waiting, directly or not, for this rank (dependency cycle)");
      }
    }
    return absl::OkStatus();
  }

  const Schedule& s_;
  std::vector<int> f_, bi_, i_, w_;
  std::vector<int> rf_, rb_;  // lowered: position of each receive
};

}  // namespace

absl::Status Validate(const Schedule& s) { return Validator(s).Run(); }

}  // namespace tandem::schedule
