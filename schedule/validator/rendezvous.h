// -----------------------------------------------------------------------------
// File: rendezvous.h
// -----------------------------------------------------------------------------
//
// Runs the programs of a lowered schedule against each other: each rank goes
// through its actions in order, posts a batch of sends and receives where
// its first operation stands and, before the action at the batch's
// wait_before, waits until every partner of the batch has posted (NCCL
// groups complete at rendezvous). A rank blocked on an unposted partner
// resumes when it is posted. When no rank can move and some have not
// finished, that is a deadlock.
//
// The engine is one for every user: CheckRendezvous() runs it without time
// (the validator's deadlock check); the simulator runs it with a Timing that
// gives compute durations and completion times. A Timing provides
//   static constexpr bool kTimed;  // false: compute is skipped, no hooks run
//   bool NeedsPartner(bool send);  // must the op wait for its partner's post?
//   void Compute(int rank, int pos, int32_t id);   // a compute action runs
//   void Post(int rank, int pos, int32_t id);      // an op is posted
//   void Complete(int rank, int pos, int32_t id, int32_t partner, bool send);
// (ids are MatchMessages()' global ids; Complete is called once the partner
// has posted, or at once when !NeedsPartner).
#ifndef TANDEM_SCHEDULE_VALIDATOR_RENDEZVOUS_H_
#define TANDEM_SCHEDULE_VALIDATOR_RENDEZVOUS_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "schedule/ir/matching.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// CheckRendezvous()
//
// OK if every rank of the lowered `s` (messages `m` from MatchMessages(s))
// finishes; else kInvalidArgument "deadlock: " naming every blocked rank, its
// position and action, and whom it waits for.
absl::Status CheckRendezvous(const Schedule& s, const MessageIndex& m);

template <typename Timing>
class RendezvousEngine {
 public:
  RendezvousEngine(const Schedule& s, const MessageIndex& m, Timing* timing) : s_(s), m_(m), timing_(timing) {}

  // Runs every rank to its end; the deadlock error of CheckRendezvous(), or
  // kInvalidArgument for batches that are not contiguous or waited before
  // their end.
  absl::Status Run() {
    absl::Status prepared = Prepare();
    if (!prepared.ok()) return prepared;
    std::vector<int> work(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) work[r] = s_.ranks - 1 - r;
    while (!work.empty()) {
      const int r = work.back();
      work.pop_back();
      Advance(r, &work);
    }
    for (int r = 0; r < s_.ranks; ++r) {
      if (!rank_[r].done) return Deadlock();
    }
    return absl::OkStatus();
  }

 private:
  // An op's state; kAwaited: not posted, and a blocked rank waits for it.
  enum OpState : uint8_t { kUnposted, kAwaited, kPosted };
  struct RankState {
    int pos = 0;
    int next_post = 0;  // index in posts_ of the next batch this rank posts
    int next_wait = 0;  // index in waits_ of the next batch this rank waits for
    int32_t waiting_on = -1;
    bool done = false;
  };
  // A batch's operations: positions [first, first + size) of its rank.
  struct Span {
    int first = 0;
    int size = 0;
  };
  // A batch to wait for before position `at`.
  struct Wait {
    int at = 0;
    Span ops;
  };

  // Checks every rank's batches and lays out its posts and waits.
  absl::Status Prepare() {
    const int ranks = s_.ranks;
    state_.assign(m_.size(), kUnposted);
    waiter_.resize(m_.size());
    rank_.assign(ranks, {});
    batch_base_.assign(ranks + 1, 0);
    for (int r = 0; r < ranks; ++r) {
      batch_base_[r + 1] = batch_base_[r] + static_cast<int>(s_.programs[r].batches.size());
    }
    posts_.resize(batch_base_[ranks]);
    waits_.resize(batch_base_[ranks]);
    for (int r = 0; r < ranks; ++r) {
      absl::Status s = IndexBatches(r);
      if (s.ok()) s = SortWaits(r);
      if (!s.ok()) return s;
      rank_[r].next_post = rank_[r].next_wait = batch_base_[r];
    }
    return absl::OkStatus();
  }

  // Fills span_ with rank r's batches and posts_ with them in position
  // order; each batch must be contiguous.
  absl::Status IndexBatches(int r) {
    const RankProgram& p = s_.programs[r];
    const int n = static_cast<int>(p.actions.size());
    const int nb = static_cast<int>(p.batches.size());
    span_.assign(nb, {-1, 0});
    order_.clear();
    for (int i = 0; i < n; ++i) {
      const Action& a = p.actions[i];
      if (!IsComm(a.op)) continue;
      if (a.batch < 0 || a.batch >= nb) {
        return absl::InvalidArgumentError(absl::StrFormat("rank %d position %d (%s): batch: expected 0..%d, got %d", r,
                                                          i, DescribeAction(s_, a), nb - 1, a.batch));
      }
      Span& b = span_[a.batch];
      if (b.first < 0) {
        b.first = i;
        order_.push_back(a.batch);
      } else if (b.first + b.size != i) {
        return absl::InvalidArgumentError(absl::StrFormat("rank %d position %d (%s): batch %d is not contiguous", r, i,
                                                          DescribeAction(s_, a), a.batch));
      }
      ++b.size;
    }
    Span* posts = posts_.data() + batch_base_[r];
    for (int b : order_) *posts++ = span_[b];
    return absl::OkStatus();
  }

  // Fills rank r's part of waits_, sorted by wait_before (batch order among
  // equals), after checking each batch waits at or after its end.
  absl::Status SortWaits(int r) {
    const RankProgram& p = s_.programs[r];
    const int n = static_cast<int>(p.actions.size());
    const int nb = static_cast<int>(p.batches.size());
    bool sorted = true;
    for (int b = 0; b < nb; ++b) {
      const int at = p.batches[b].wait_before;
      if (span_[b].first < 0 || at < span_[b].first + span_[b].size || at > n) {
        return absl::InvalidArgumentError(
            absl::StrFormat("rank %d batch %d: wait_before %d outside [end of batch, %d]", r, b, at, n));
      }
      sorted = sorted && (b == 0 || p.batches[b - 1].wait_before <= at);
    }
    Wait* waits = waits_.data() + batch_base_[r];
    if (sorted) {
      for (int b = 0; b < nb; ++b) waits[b] = {p.batches[b].wait_before, span_[b]};
      return absl::OkStatus();
    }
    // Counting sort by position.
    bucket_.assign(n + 2, 0);
    for (int b = 0; b < nb; ++b) ++bucket_[p.batches[b].wait_before + 1];
    for (int i = 0; i <= n; ++i) bucket_[i + 1] += bucket_[i];
    for (int b = 0; b < nb; ++b) {
      const int at = p.batches[b].wait_before;
      waits[bucket_[at]++] = {at, span_[b]};
    }
    return absl::OkStatus();
  }

  // Waits for the batch `ops` of rank r; false (and the rank blocked) if a
  // partner is not posted yet. Completions are reported once all are.
  bool Await(int r, Span ops) {
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    const Action* actions = s_.programs[r].actions.data();
    for (int i = ops.first; i < ops.first + ops.size; ++i) {
      const int32_t id = base + i;
      if ((!Timing::kTimed || timing_->NeedsPartner(IsSend(actions[i].op))) && state_[m_.partner[id]] != kPosted) {
        return Block(r, m_.partner[id]);
      }
    }
    if (Timing::kTimed) {
      for (int i = ops.first; i < ops.first + ops.size; ++i) {
        timing_->Complete(r, i, base + i, m_.partner[base + i], IsSend(actions[i].op));
      }
    }
    return true;
  }

  // Blocks rank r until op `id` is posted; false.
  bool Block(int r, int32_t id) {
    rank_[r].waiting_on = id;
    state_[id] = kAwaited;
    waiter_[id] = r;
    return false;
  }

  // Posts the batch `ops` of rank r and wakes the ranks waiting for them.
  void Post(int r, Span ops, std::vector<int>* work) {
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    for (int i = ops.first; i < ops.first + ops.size; ++i) {
      const int32_t id = base + i;
      if (Timing::kTimed) timing_->Post(r, i, id);
      if (state_[id] == kAwaited) {
        const int q = waiter_[id];
        rank_[q].waiting_on = -1;
        work->push_back(q);
      }
      state_[id] = kPosted;
    }
  }

  // Runs rank r until it blocks or finishes. Before each position it waits
  // for the batches due there (a wait due inside a batch, which the rank
  // posts at once, is never reached); a batch is posted where its first
  // operation stands. Untimed, compute is skipped.
  void Advance(int r, std::vector<int>* work) {
    RankState& st = rank_[r];
    if (st.done) return;
    st.waiting_on = -1;
    const int n = static_cast<int>(s_.programs[r].actions.size());
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    const int end = batch_base_[r + 1];
    while (true) {
      // Waits due at st.pos; any due before it stood inside a posted batch.
      for (; st.next_wait < end && waits_[st.next_wait].at <= st.pos; ++st.next_wait) {
        const Wait& w = waits_[st.next_wait];
        if (w.at == st.pos && !Await(r, w.ops)) return;
      }
      if (st.pos == n) break;
      if (st.next_post < end && posts_[st.next_post].first == st.pos) {
        const Span ops = posts_[st.next_post++];
        Post(r, ops, work);
        st.pos += ops.size;
        continue;
      }
      if (!Timing::kTimed) {  // on to the next post or wait
        st.pos = std::min(
            {n, st.next_post < end ? posts_[st.next_post].first : n, st.next_wait < end ? waits_[st.next_wait].at : n});
        continue;
      }
      timing_->Compute(r, st.pos, base + st.pos);
      ++st.pos;
    }
    st.done = true;
  }

  absl::Status Deadlock() const {
    std::vector<std::string> lines;
    for (int r = 0; r < s_.ranks; ++r) {
      const RankState& st = rank_[r];
      if (st.done) continue;
      const RankProgram& p = s_.programs[r];
      std::string what =
          st.pos < static_cast<int>(p.actions.size()) ? DescribeAction(s_, p.actions[st.pos]) : "end of program";
      std::string waits;
      if (st.waiting_on >= 0) {
        const int q = m_.rank_of[st.waiting_on];
        const int qi = static_cast<int>(st.waiting_on - m_.offset[q]);
        waits = absl::StrFormat("; waits for rank %d to post position %d (%s), but rank %d is at position %d", q, qi,
                                DescribeAction(s_, s_.programs[q].actions[qi]), q, rank_[q].pos);
      }
      lines.push_back(absl::StrFormat("rank %d position %d (before %s)%s", r, st.pos, what, waits));
    }
    return absl::InvalidArgumentError(absl::StrCat("deadlock: ", absl::StrJoin(lines, "; ")));
  }

  const Schedule& s_;
  const MessageIndex& m_;
  Timing* timing_;
  std::vector<OpState> state_;  // per op
  std::vector<int> waiter_;     // per kAwaited op: the rank that waits
  std::vector<RankState> rank_;
  std::vector<int> batch_base_;  // rank r's batches are [batch_base_[r], batch_base_[r + 1])
  std::vector<Span> posts_;      // each rank's batches in position order
  std::vector<Wait> waits_;      // each rank's batches by wait_before
  std::vector<Span> span_;       // Prepare: the current rank's batches
  std::vector<int> order_;       // Prepare: them by first position
  std::vector<int> bucket_;      // Prepare: counting sort of the waits
};

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_VALIDATOR_RENDEZVOUS_H_
