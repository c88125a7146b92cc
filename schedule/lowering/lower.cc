#include "schedule/lowering/lower.h"

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "schedule/generators/dualpipe.h"

namespace tandem::schedule {
namespace {

// The data an action needs from, and gives to, other ranks.
struct Transfer {
  Op op;
  int stage, mb, dir, peer;
};

// Receives that `a` (on `rank`) needs, in the reference's queuing order
// (forward input first, then output gradient).
int NeededRecvs(const Schedule& s, int rank, const Action& a, Transfer out[2]) {
  int n = 0;
  auto fwd = [&](int stage, int mb, int dir) {
    if (stage > 0 && s.RankOf(dir, stage - 1) != rank) {
      out[n++] = {Op::kRecvF, stage, mb, dir, s.RankOf(dir, stage - 1)};
    }
  };
  auto bwd = [&](int stage, int mb, int dir) {
    if (stage + 1 < s.stages && s.RankOf(dir, stage + 1) != rank) {
      out[n++] = {Op::kRecvB, stage, mb, dir, s.RankOf(dir, stage + 1)};
    }
  };
  if (a.op == Op::kForward) fwd(a.stage, a.mb, a.direction);
  if (IsInputBackward(a.op)) bwd(a.stage, a.mb, a.direction);
  if (a.op == Op::kForwardBackward) {
    fwd(a.stage, a.mb, a.direction);
    bwd(a.stage_b, a.mb_b, a.direction_b);
  }
  return n;
}

// Sends that `a` produces, forward output first.
int ProducedSends(const Schedule& s, int rank, const Action& a, Transfer out[2]) {
  int n = 0;
  auto fwd = [&](int stage, int mb, int dir) {
    if (stage + 1 < s.stages && s.RankOf(dir, stage + 1) != rank) {
      out[n++] = {Op::kSendF, stage, mb, dir, s.RankOf(dir, stage + 1)};
    }
  };
  auto bwd = [&](int stage, int mb, int dir) {
    if (stage > 0 && s.RankOf(dir, stage - 1) != rank) {
      out[n++] = {Op::kSendB, stage, mb, dir, s.RankOf(dir, stage - 1)};
    }
  };
  if (a.op == Op::kForward) fwd(a.stage, a.mb, a.direction);
  if (IsInputBackward(a.op)) bwd(a.stage, a.mb, a.direction);
  if (a.op == Op::kForwardBackward) {
    fwd(a.stage, a.mb, a.direction);
    bwd(a.stage_b, a.mb_b, a.direction_b);
  }
  return n;
}

void Append(const Transfer& t, int batch, RankProgram* p) {
  p->actions.push_back(Action::Comm(t.op, t.stage, t.mb, t.dir, t.peer, batch));
}

Schedule LowerBatched(const Schedule& s) {
  Schedule out = s;
  out.lowered = true;
  for (int r = 0; r < s.ranks; ++r) {
    RankProgram& p = out.programs[r];
    p.actions.clear();
    p.batches.clear();
    std::vector<Transfer> queued;
    auto commit = [&]() {
      if (queued.empty()) return;
      const int batch = static_cast<int>(p.batches.size());
      for (const Transfer& t : queued) Append(t, batch, &p);
      p.batches.push_back({static_cast<int32_t>(p.actions.size())});
      queued.clear();
    };
    Transfer t[2];
    for (const Action& a : s.programs[r].actions) {
      for (int i = 0, n = NeededRecvs(s, r, a, t); i < n; ++i) queued.push_back(t[i]);
      commit();
      p.actions.push_back(a);
      for (int i = 0, n = ProducedSends(s, r, a, t); i < n; ++i) queued.push_back(t[i]);
    }
    commit();
  }
  return out;
}

// Key of a (op, stage, mb, direction) fact visible on a rank.
uint64_t Key(Op op, int stage, int mb, int dir) {
  return (uint64_t{static_cast<uint8_t>(op)} << 56) | (uint64_t(dir & 1) << 55) | (uint64_t(uint32_t(stage)) << 27) |
         uint64_t(uint32_t(mb) & ((1u << 27) - 1));
}

absl::StatusOr<Schedule> LowerTorch(const Schedule& s) {
  if (s.directions != 1) {
    return absl::InvalidArgumentError(
        "style: PyTorch lowering needs one direction; dualpipe places each "
        "stage on two ranks (use the batched style)");
  }
  Schedule out = s;
  out.lowered = true;
  for (RankProgram& p : out.programs) {
    p.actions.clear();
    p.batches.clear();
  }
  std::vector<absl::flat_hash_set<uint64_t>> seen(s.ranks);
  std::vector<size_t> head(s.ranks, 0);
  auto visible = [&](int r, Op op, int stage, int mb) { return seen[r].contains(Key(op, stage, mb, 0)); };
  auto ready_part = [&](int r, Op op, int stage, int mb) {
    if (op == Op::kForward) {
      return stage == 0 || visible(r, Op::kRecvF, stage, mb) || visible(r, Op::kForward, stage - 1, mb);
    }
    if (IsInputBackward(op)) {
      return stage == s.stages - 1 || visible(r, Op::kRecvB, stage, mb) ||
             visible(r, Op::kBackwardInput, stage + 1, mb) || visible(r, Op::kBackward, stage + 1, mb);
    }
    return true;
  };
  auto ready = [&](int r, const Action& a) {
    if (a.op == Op::kForwardBackward) {
      return ready_part(r, Op::kForward, a.stage, a.mb) && ready_part(r, Op::kBackward, a.stage_b, a.mb_b);
    }
    return ready_part(r, a.op, a.stage, a.mb);
  };
  auto mark = [&](int r, const Action& a) {
    if (a.op == Op::kForwardBackward) {
      seen[r].insert(Key(Op::kForward, a.stage, a.mb, 0));
      seen[r].insert(Key(Op::kBackward, a.stage_b, a.mb_b, 0));
    } else {
      seen[r].insert(Key(a.op, a.stage, a.mb, 0));
    }
  };
  int64_t remaining = s.TotalActions();
  Transfer t[2];
  while (remaining > 0) {
    bool progress = false;
    for (int r = 0; r < s.ranks; ++r) {
      const std::vector<Action>& src = s.programs[r].actions;
      if (head[r] == src.size()) continue;
      const Action& a = src[head[r]];
      if (!ready(r, a)) continue;
      RankProgram& p = out.programs[r];
      p.actions.push_back(a);
      mark(r, a);
      for (int i = 0, n = ProducedSends(s, r, a, t); i < n; ++i) {
        Append(t[i], static_cast<int>(p.batches.size()), &p);
        p.batches.push_back({});
        // The sender places the receiver's matching receive.
        const Op recv = t[i].op == Op::kSendF ? Op::kRecvF : Op::kRecvB;
        const int recv_stage = t[i].op == Op::kSendF ? t[i].stage + 1 : t[i].stage - 1;
        RankProgram& q = out.programs[t[i].peer];
        Append({recv, recv_stage, t[i].mb, 0, r}, static_cast<int>(q.batches.size()), &q);
        q.batches.push_back({});
        seen[t[i].peer].insert(Key(recv, recv_stage, t[i].mb, 0));
      }
      ++head[r];
      --remaining;
      progress = true;
    }
    if (!progress) {
      std::vector<std::string> stuck;
      for (int r = 0; r < s.ranks; ++r) {
        if (head[r] < s.programs[r].actions.size()) {
          stuck.push_back(absl::StrFormat("rank %d position %d (%s)", r, head[r],
                                          DescribeAction(s, s.programs[r].actions[head[r]])));
        }
      }
      return absl::InvalidArgumentError(
          absl::StrCat("malformed compute schedule: no action can become ready: ", absl::StrJoin(stuck, "; ")));
    }
  }
  SetTorchWaits(&out);
  return out;
}

}  // namespace

void SetTorchWaits(Schedule* s) {
  for (RankProgram& p : s->programs) {
    const int n = static_cast<int>(p.actions.size());
    // Where each (input, stage, mb, direction) is consumed on this rank.
    absl::flat_hash_map<uint64_t, int> consumer;
    for (int j = n - 1; j >= 0; --j) {
      const Action& c = p.actions[j];
      if (c.op == Op::kForward || c.op == Op::kForwardBackward) {
        consumer[Key(Op::kRecvF, c.stage, c.mb, c.direction)] = j;
      }
      if (IsInputBackward(c.op)) {
        consumer[Key(Op::kRecvB, c.stage, c.mb, c.direction)] = j;
      }
      if (c.op == Op::kForwardBackward) {
        consumer[Key(Op::kRecvB, c.stage_b, c.mb_b, c.direction_b)] = j;
      }
    }
    for (int i = 0; i < n; ++i) {
      const Action& a = p.actions[i];
      if (!IsComm(a.op)) continue;
      int wait = n;
      if (IsRecv(a.op)) {
        auto it = consumer.find(Key(a.op, a.stage, a.mb, a.direction));
        if (it != consumer.end() && it->second > i) wait = it->second;
      }
      p.batches[a.batch].wait_before = wait;
    }
  }
}

absl::StatusOr<Schedule> Lower(const Schedule& s, CommStyle style) {
  if (s.lowered) {
    return absl::FailedPreconditionError("lower: schedule is already lowered");
  }
  if (absl::Status st = CheckShape(s); !st.ok()) return st;
  const bool dualpipe = s.kind == Kind::kDualPipe || s.kind == Kind::kDualPipeV;
  if (style == CommStyle::kAuto) {
    style = dualpipe || s.directions == 2 ? CommStyle::kBatched : CommStyle::kTorch;
  }
  if (style == CommStyle::kTorch) return LowerTorch(s);
  if (dualpipe && DualPipeParametersValid(s.kind, s.ranks, s.microbatches)) {
    // The reference's exact batches, when the program is the generated one.
    Schedule reference = TraceDualPipe(s.kind, s.ranks, s.microbatches, true);
    bool same = true;
    for (int r = 0; r < s.ranks && same; ++r) {
      const std::vector<Action>& mine = s.programs[r].actions;
      size_t i = 0;
      for (const Action& a : reference.programs[r].actions) {
        if (IsComm(a.op)) continue;
        if (i == mine.size() || mine[i] != a) {
          same = false;
          break;
        }
        ++i;
      }
      same = same && i == mine.size();
    }
    if (same) return reference;
  }
  return LowerBatched(s);
}

}  // namespace tandem::schedule
