#include "schedule/validator/validator.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "schedule/ir/matching.h"
#include "schedule/validator/rendezvous.h"

namespace tandem::schedule {
namespace {

// Numbers one kind of message (sends, or receives) per rank pair: Next(rank,
// peer) is 0, 1, ... for the messages of `rank` with `peer`. The calls for
// one rank come together, before those of the next.
class PeerCounter {
 public:
  PeerCounter() = default;
  explicit PeerCounter(int ranks) : counts_(ranks) {}

  int Next(int rank, int peer) {
    Count& c = counts_[peer];
    if (c.rank != rank) c = {rank, 0};
    return c.count++;
  }

 private:
  struct Count {
    int rank = -1;  // whose count this is; another rank's starts at 0
    int count = 0;
  };
  std::vector<Count> counts_;
};

class Validator {
 public:
  explicit Validator(const Schedule& s) : s_(s) {}

  absl::Status Run() {
    TANDEM_RETURN_IF_ERROR(CheckShape(s_));
    const int64_t cells = int64_t{s_.directions} * s_.stages * s_.microbatches_per_direction();
    if (cells > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("schedule: %d stage copies x micro-batches is too large", cells));
    }
    mbs_ = s_.microbatches_per_direction();
    f_.assign(cells, -1);
    bi_.assign(cells, -1);
    i_.assign(cells, -1);
    w_.assign(cells, -1);
    if (s_.lowered) {
      rf_.assign(cells, Receive());
      rb_.assign(cells, Receive());
      sf_.assign(cells, -1);
      sb_.assign(cells, -1);
      received_ = PeerCounter(s_.ranks);
      sent_ = PeerCounter(s_.ranks);
    }
    for (int r = 0; r < s_.ranks; ++r) TANDEM_RETURN_IF_ERROR(CheckProgram(r));
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
  // A message's receive: its position, its number among the receives from
  // its peer (-1 if no send can match it: its overlap fields are set) and
  // where its batch is waited on.
  struct Receive {
    int pos = -1;
    int order = -1;
    int wait = -1;
  };
  // A failed communication check; `key` orders findings as one pass over the
  // actions would meet them: by global action id, then by the check's place
  // among the action's (0 or 1).
  static constexpr int kChecksPerAction = 2;
  struct Finding {
    int64_t key = std::numeric_limits<int64_t>::max();
    absl::Status status;
  };

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

  int64_t Cell(int dir, int stage, int mb) const { return (int64_t{dir} * s_.stages + stage) * mbs_ + mb; }

  // Whether (stage, mb, dir) names a cell.
  bool InRange(int stage, int mb, int dir) const {
    return stage >= 0 && stage < s_.stages && dir >= 0 && dir < s_.directions && mb >= 0 && mb < mbs_;
  }
  // The error for a part (stage, mb, dir) that is not InRange().
  absl::Status PartError(int r, int k, int stage, int mb, int dir) const {
    if (stage < 0 || stage >= s_.stages) {
      return Error(r, k, absl::StrFormat("stage: expected 0..%d, got %d", s_.stages - 1, stage));
    }
    if (dir < 0 || dir >= s_.directions) {
      return Error(r, k, absl::StrFormat("direction: expected 0..%d, got %d", s_.directions - 1, dir));
    }
    return Error(r, k, absl::StrFormat("micro-batch: expected 0..%d, got %d", mbs_ - 1, mb));
  }

  // The first pass, over rank r's program: checks every action on its own
  // and against the earlier ones (placement, each part once, F before B/I, I
  // before W); in a lowered program also the communication checks, noted
  // for CheckComm().
  absl::Status CheckProgram(int r) {
    const std::vector<Action>& p = s_.programs[r].actions;
    for (int k = 0; k < static_cast<int>(p.size()); ++k) {
      const Action& a = p[k];
      if (static_cast<int>(a.op) > static_cast<int>(Op::kRecvB)) return Error(r, k, "unknown op");
      if (!InRange(a.stage, a.mb, a.direction)) return PartError(r, k, a.stage, a.mb, a.direction);
      if (IsComm(a.op)) {
        TANDEM_RETURN_IF_ERROR(CheckCommAction(r, k, a));
        continue;
      }
      if (a.op == Op::kForwardBackward) {
        if (!InRange(a.stage_b, a.mb_b, a.direction_b)) return PartError(r, k, a.stage_b, a.mb_b, a.direction_b);
        TANDEM_RETURN_IF_ERROR(Record(r, k, Op::kForward, a.stage, a.mb, a.direction));
        TANDEM_RETURN_IF_ERROR(Record(r, k, Op::kBackward, a.stage_b, a.mb_b, a.direction_b));
      } else {
        TANDEM_RETURN_IF_ERROR(Record(r, k, a.op, a.stage, a.mb, a.direction));
      }
      if (s_.lowered) NoteInputs(r, k, a);
    }
    base_ += static_cast<int64_t>(p.size());
    return absl::OkStatus();
  }

  // Records compute `op` on (stage, mb, dir) at (r, k): the stage is placed
  // on r, each op runs once, F before B/I and I before W.
  absl::Status Record(int r, int k, Op op, int stage, int mb, int dir) {
    if (s_.RankOf(dir, stage) != r) {
      return Error(
          r, k,
          absl::StrFormat("stage %d direction %d is placed on rank %d, not here", stage, dir, s_.RankOf(dir, stage)));
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
        if (f_[c] < 0)
          return Error(
              r, k, "backward before its forward: expected F of the same stage and micro-batch earlier on this rank");
        if (op == Op::kBackwardInput) TANDEM_RETURN_IF_ERROR(once(i_, "input backward"));
        return once(bi_, "backward");
      case Op::kBackwardWeight:
        if (i_[c] < 0)
          return Error(r, k,
                       "weight gradient before its input backward: expected I of the same stage and micro-batch "
                       "earlier on this rank");
        return once(w_, "weight gradient");
      default:
        return absl::OkStatus();
    }
  }

  // A send or receive: peer and batch, each receive once. Notes whether the
  // data it carries was produced (send) or not yet consumed (receive) here.
  absl::Status CheckCommAction(int r, int k, const Action& a) {
    if (!s_.lowered) return Error(r, k, "send or receive in a compute-only program");
    const bool towards_next = a.op == Op::kSendF || a.op == Op::kRecvB;
    const int other = towards_next ? a.stage + 1 : a.stage - 1;
    if (other < 0 || other >= s_.stages) {
      return Error(r, k, absl::StrFormat("no stage %d to exchange with", other));
    }
    if (s_.RankOf(a.direction, a.stage) != r) {
      return Error(
          r, k, absl::StrFormat("stage %d is placed on rank %d, not here", a.stage, s_.RankOf(a.direction, a.stage)));
    }
    const int peer = s_.RankOf(a.direction, other);
    if (a.peer != peer) {
      return Error(r, k, absl::StrFormat("peer: expected rank %d (holder of stage %d), got %d", peer, other, a.peer));
    }
    const int batches = static_cast<int>(s_.programs[r].batches.size());
    if (a.batch < 0 || a.batch >= batches) {
      return Error(r, k, absl::StrFormat("batch: expected 0..%d, got %d", batches - 1, a.batch));
    }
    const int64_t c = Cell(a.direction, a.stage, a.mb);
    const bool fwd = a.op == Op::kSendF || a.op == Op::kRecvF;
    if (IsRecv(a.op)) {
      Receive& at = (fwd ? rf_ : rb_)[c];
      if (at.pos >= 0) return Error(r, k, absl::StrFormat("received twice (first at position %d)", at.pos));
      const int order = received_.Next(r, a.peer);
      at = {k, a.stage_b == -1 && a.mb_b == -1 && a.direction_b == 0 ? order : -1,
            s_.programs[r].batches[a.batch].wait_before};
      const int consumer = (fwd ? f_ : bi_)[c];
      if (consumer >= 0 && Precedes(k, 0)) {
        Note(k, 0, Error(r, k, absl::StrFormat("received after its consumer at position %d", consumer)));
      }
      return absl::OkStatus();
    }
    int& order = (fwd ? sf_ : sb_)[c];
    if (order >= 0) resent_ = true;
    order = sent_.Next(r, a.peer);
    if ((fwd ? f_ : bi_)[c] < 0 && Precedes(k, 1)) {
      Note(k, 1,
           Error(r, k,
                 fwd ? "send of an activation before its forward ran on this rank"
                     : "send of a gradient before its backward ran on this rank"));
    }
    return absl::OkStatus();
  }

  // Notes, for the compute at (r, k), inputs from other ranks not received
  // before it, and receives of its inputs waited on only after it.
  void NoteInputs(int r, int k, const Action& a) {
    if (a.op == Op::kForward || a.op == Op::kForwardBackward) {
      NoteInput(r, k, 0, Op::kRecvF, a.stage, a.mb, a.direction, a.stage - 1);
    }
    if (IsInputBackward(a.op)) NoteInput(r, k, 0, Op::kRecvB, a.stage, a.mb, a.direction, a.stage + 1);
    if (a.op == Op::kForwardBackward) {
      NoteInput(r, k, 1, Op::kRecvB, a.stage_b, a.mb_b, a.direction_b, a.stage_b + 1);
    }
  }

  // One input of the compute at (r, k), from stage `from`; `check` orders
  // the finding among the action's.
  void NoteInput(int r, int k, int check, Op recv, int stage, int mb, int dir, int from) {
    const Receive& at = (recv == Op::kRecvF ? rf_ : rb_)[Cell(dir, stage, mb)];
    if (at.pos >= 0) {
      if (at.wait > k && Precedes(at.pos, 1)) {
        Note(at.pos, 1,
             Error(r, at.pos,
                   absl::StrFormat("waited on at position %d, after its consumer at position %d", at.wait, k)));
      }
      return;
    }
    if (from < 0 || from >= s_.stages || s_.RankOf(dir, from) == r || !Precedes(k, check)) return;
    const int peer = s_.RankOf(dir, from);
    Note(k, check,
         Error(r, k,
               absl::StrFormat("input from rank %d never received: expected %s earlier", peer,
                               DescribeAction(s_, Action::Comm(recv, stage, mb, dir, peer, -1)))));
  }

  // Whether a finding of check `check` on action k of the rank being passed
  // over comes before the one noted so far; Note() makes it the one.
  int64_t Key(int k, int check) const { return (base_ + k) * kChecksPerAction + check; }
  bool Precedes(int k, int check) const { return Key(k, check) < finding_.key; }
  void Note(int k, int check, absl::Status status) { finding_ = {Key(k, check), std::move(status)}; }

  absl::Status CheckCounts() const {
    for (int d = 0; d < s_.directions; ++d) {
      for (int stage = 0; stage < s_.stages; ++stage) {
        for (int mb = 0; mb < mbs_; ++mb) {
          const int64_t c = Cell(d, stage, mb);
          const char* missing = f_[c] < 0                   ? "forward"
                                : bi_[c] < 0                ? "backward (B or I)"
                                : (i_[c] >= 0 && w_[c] < 0) ? "weight gradient (W) after its I"
                                                            : nullptr;
          if (missing != nullptr) {
            const int r = s_.RankOf(d, stage);
            return absl::InvalidArgumentError(
                absl::StrFormat("rank %d: stage %d direction %d micro-batch %d has no %s (each stage needs %d "
                                "forwards, %d backwards and one W per I)",
                                r, stage, d, mb, missing, mbs_, mbs_));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  // The communication checks, as one pass over the actions would report
  // them: sends match their receives (k-th with k-th on every directed pair)
  // and follow their producer; receives precede and are waited on before
  // their consumer; every cross-rank input is received. `m` pairs messages.
  absl::Status CheckComm(const MessageIndex& m) {
    if (!PairsMatch()) NoteFirstMismatch(m);
    return finding_.status;
  }

  // Whether every send's partner (k-th send with k-th receive on its rank
  // pair) is the receive of the same message, without looking partners up:
  // with counts balanced on every pair (MatchMessages() passed) and no
  // message sent twice, that holds iff every sent message's receive has the
  // send's number.
  bool PairsMatch() const {
    if (resent_) return false;
    for (int64_t c = 0; c < static_cast<int64_t>(sf_.size()); ++c) {
      if (sf_[c] >= 0 && rf_[c + mbs_].order != sf_[c]) return false;
      if (sb_[c] >= 0 && rb_[c - mbs_].order != sb_[c]) return false;
    }
    return true;
  }

  // Notes the first send, in program order, whose partner in `m` is not the
  // receive of the same message (the exact check behind PairsMatch()).
  void NoteFirstMismatch(const MessageIndex& m) {
    PeerCounter sent(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) {
      const std::vector<Action>& p = s_.programs[r].actions;
      base_ = m.offset[r];
      for (int k = 0; k < static_cast<int>(p.size()); ++k) {
        const Action& a = p[k];
        if (!IsSend(a.op)) continue;
        const int n = sent.Next(r, a.peer);
        const int32_t partner = m.partner[m.offset[r] + k];
        const int q = m.rank_of[partner];
        const int qk = static_cast<int>(partner - m.offset[q]);
        const Action& rcv = s_.programs[q].actions[qk];
        const bool fwd = a.op == Op::kSendF;
        const Action want = Action::Comm(fwd ? Op::kRecvF : Op::kRecvB, fwd ? a.stage + 1 : a.stage - 1, a.mb,
                                         a.direction, r, rcv.batch);
        if (rcv != want) {
          if (Precedes(k, 0)) {
            Note(k, 0,
                 Error(q, qk,
                       absl::StrFormat("receive #%d from rank %d does not match send #%d there: expected %s, sent by "
                                       "rank %d position %d "
                                       "(%s)",
                                       n, r, n, DescribeAction(s_, want), r, k, DescribeAction(s_, a))));
          }
          return;
        }
      }
    }
  }

  // Compute-only: run the ranks with unbounded buffers; an action runs once
  // its cross-rank inputs exist. Stuck ranks mean no order exists.
  absl::Status CheckDataflow() const {
    std::vector<char> fdone(f_.size(), 0), bdone(f_.size(), 0);
    std::vector<int> pos(s_.ranks, 0);
    auto ready_f = [&](int stage, int mb, int dir) { return stage == 0 || fdone[Cell(dir, stage - 1, mb)]; };
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
        return Error(r, pos[r],
                     "no order runs this: it waits for an input that another rank produces only after "
                     "waiting, directly or not, for this rank (dependency cycle)");
      }
    }
    return absl::OkStatus();
  }

  const Schedule& s_;
  int mbs_ = 0;  // micro-batches per direction
  // Per (copy, mb): position (rank-local) of F, of B-or-I, of I, of W.
  std::vector<int> f_, bi_, i_, w_;
  // Lowered, per (copy, mb) of the op's own stage: RECV_F and RECV_B, and the
  // number of SEND_F and of SEND_B on their rank pair.
  std::vector<Receive> rf_, rb_;
  std::vector<int> sf_, sb_;
  bool resent_ = false;          // some message is sent twice
  PeerCounter received_, sent_;  // numbers receives and sends in the first pass
  int64_t base_ = 0;             // in a pass over the actions: global id of the rank's first
  Finding finding_;              // the first failed communication check
};

}  // namespace

absl::Status Validate(const Schedule& s) { return Validator(s).Run(); }

}  // namespace tandem::schedule
