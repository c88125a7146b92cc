#include "schedule/simulator/simulator.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "schedule/ir/messages.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

// Completion() of an op whose partner has not posted yet.
constexpr double kIncomplete = -1.0;
// Engine::state_ of an op; kAwaited: not posted, and a blocked rank waits
// for it.
enum OpState : uint8_t { kUnposted, kAwaited, kPosted };

class Engine {
 public:
  // `timed` false: only the order of events, no clocks (the deadlock check).
  Engine(const Schedule& s, const MessageIndex& m, const SimOptions& o, bool timed = true)
      : s_(s), o_(o), m_(m), timed_(timed) {}

  absl::StatusOr<SimResult> Run() {
    TANDEM_RETURN_IF_ERROR(Prepare());
    std::vector<int> work(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) work[r] = s_.ranks - 1 - r;
    while (!work.empty()) {
      const int r = work.back();
      work.pop_back();
      if (timed_) {
        Advance<true>(r, &work);
      } else {
        Advance<false>(r, &work);
      }
    }
    for (int r = 0; r < s_.ranks; ++r) {
      if (!rank_[r].done) return Deadlock();
    }
    return Finish();
  }

 private:
  struct RankState {
    int pos = 0;
    int next_post = 0;  // index in posts_ of the next batch this rank posts
    int next_wait = 0;  // index in waits_ of the next batch this rank waits for
    double clock = 0;
    int32_t cause = -1;  // global id of the compute that set `clock`
    int32_t waiting_on = -1;
    bool done = false;
    int live = 0;  // stage-activations held
    int peak = 0;
    double busy = 0;
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

  // Checks the cost model and every rank's batches, and lays out each
  // rank's posts and waits.
  absl::Status Prepare() {
    for (const std::vector<double>* v : {&o_.cost.f, &o_.cost.b, &o_.cost.i, &o_.cost.w, &o_.cost.fb}) {
      if (!v->empty() && v->size() != 1 && static_cast<int>(v->size()) != s_.stages) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "cost: per-stage list has %d values, expected 1 or %d (stages)", v->size(), s_.stages));
      }
    }
    const int ranks = s_.ranks;
    state_.assign(m_.size(), kUnposted);
    waiter_.resize(m_.size());
    if (timed_) post_.assign(m_.size(), 0);
    rank_.assign(ranks, {});
    if (timed_ && o_.timeline) {
      post_cause_.assign(m_.size(), -1);
      cause_.assign(m_.size(), -1);
      timeline_.resize(ranks);
      for (int r = 0; r < ranks; ++r) timeline_[r].resize(s_.programs[r].actions.size());
    }
    batch_base_.assign(ranks + 1, 0);
    for (int r = 0; r < ranks; ++r) {
      batch_base_[r + 1] = batch_base_[r] + static_cast<int>(s_.programs[r].batches.size());
    }
    posts_.resize(batch_base_[ranks]);
    waits_.resize(batch_base_[ranks]);
    for (int r = 0; r < ranks; ++r) {
      TANDEM_RETURN_IF_ERROR(IndexBatches(r));
      TANDEM_RETURN_IF_ERROR(SortWaits(r));
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
        return absl::InvalidArgumentError(absl::StrFormat(
            "rank %d position %d (%s): batch: expected 0..%d, got %d", r, i, DescribeAction(s_, a), nb - 1,
            a.batch));
      }
      Span& b = span_[a.batch];
      if (b.first < 0) {
        b.first = i;
        order_.push_back(a.batch);
      } else if (b.first + b.size != i) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "rank %d position %d (%s): batch %d is not contiguous", r, i, DescribeAction(s_, a), a.batch));
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
        return absl::InvalidArgumentError(absl::StrFormat(
            "rank %d batch %d: wait_before %d outside [end of batch, %d]", r, b, at, n));
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

  // Completion of op `id`, or kIncomplete if its partner is not posted yet.
  double Completion(int32_t id, bool send) const {
    const double mine = post_[id];
    if (o_.semantics == CommSemantics::kBuffered && send) return mine;
    const int32_t partner = m_.partner[id];
    if (state_[partner] != kPosted) return kIncomplete;
    const double theirs = post_[partner];
    if (o_.semantics == CommSemantics::kBuffered) return std::max(mine, theirs + transfer_);
    return std::max(mine, theirs) + transfer_;
  }

  // Waits for the batch `ops` of rank r; false (and st.waiting_on set) if a
  // partner is not posted yet. Untimed: done once every partner has posted.
  template <bool kTimed>
  bool Await(int r, Span ops, RankState& st, Interval* timeline) {
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    const Action* actions = s_.programs[r].actions.data();
    for (int i = ops.first; i < ops.first + ops.size; ++i) {
      const int32_t id = base + i;
      if (!kTimed) {
        if (state_[m_.partner[id]] != kPosted) return Block(r, m_.partner[id], st);
        continue;
      }
      const double done = Completion(id, IsSend(actions[i].op));
      if (done == kIncomplete) return Block(r, m_.partner[id], st);
      if (timeline != nullptr) timeline[i].end = done;
      if (done > st.clock) {
        st.clock = done;
        if (timeline != nullptr) st.cause = post_cause_[m_.partner[id]];
      }
    }
    return true;
  }

  // Blocks rank r (state `st`) until op `id` is posted; false.
  bool Block(int r, int32_t id, RankState& st) {
    st.waiting_on = id;
    state_[id] = kAwaited;
    waiter_[id] = r;
    return false;
  }

  // Posts the batch `ops` of rank r and wakes the ranks waiting for them.
  template <bool kTimed>
  void Post(int r, Span ops, const RankState& st, Interval* timeline, std::vector<int>* work) {
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    for (int i = ops.first; i < ops.first + ops.size; ++i) {
      const int32_t id = base + i;
      if (kTimed) post_[id] = st.clock;
      if (timeline != nullptr) {
        post_cause_[id] = st.cause;
        timeline[i].start = st.clock;
      }
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
  // operation stands. Untimed: compute takes no time and is skipped.
  template <bool kTimed>
  void Advance(int r, std::vector<int>* work) {
    RankState& st = rank_[r];
    if (st.done) return;
    st.waiting_on = -1;
    const RankProgram& p = s_.programs[r];
    const int n = static_cast<int>(p.actions.size());
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    const int end = batch_base_[r + 1];
    const Action* actions = p.actions.data();
    Interval* timeline = kTimed && o_.timeline ? timeline_[r].data() : nullptr;
    while (true) {
      // Waits due at st.pos; any due before it stood inside a posted batch.
      for (; st.next_wait < end && waits_[st.next_wait].at <= st.pos; ++st.next_wait) {
        const Wait& w = waits_[st.next_wait];
        if (w.at == st.pos && !Await<kTimed>(r, w.ops, st, timeline)) return;
      }
      if (st.pos == n) break;
      if (st.next_post < end && posts_[st.next_post].first == st.pos) {
        const Span ops = posts_[st.next_post++];
        Post<kTimed>(r, ops, st, timeline, work);
        st.pos += ops.size;
        continue;
      }
      if (!kTimed) {  // on to the next post or wait
        st.pos = std::min({n, st.next_post < end ? posts_[st.next_post].first : n,
                           st.next_wait < end ? waits_[st.next_wait].at : n});
        continue;
      }
      const Action& a = actions[st.pos];
      const double d = o_.cost.Duration(a);
      const int32_t id = base + st.pos;
      if (timeline != nullptr) {
        timeline[st.pos] = {st.clock, st.clock + d};
        cause_[id] = st.cause;
      }
      st.clock += d;
      st.cause = id;
      st.busy += d;
      if (a.op == Op::kForward || a.op == Op::kForwardBackward) ++st.live;
      st.peak = std::max(st.peak, st.live);
      if (IsInputBackward(a.op) || a.op == Op::kForwardBackward) --st.live;
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
      std::string what = st.pos < static_cast<int>(p.actions.size()) ? DescribeAction(s_, p.actions[st.pos])
                                                                      : "end of program";
      std::string waits;
      if (st.waiting_on >= 0) {
        const int q = m_.rank_of[st.waiting_on];
        const int qi = static_cast<int>(st.waiting_on - m_.offset[q]);
        waits = absl::StrFormat("; waits for rank %d to post position %d (%s), but rank %d is at position %d", q,
                                qi, DescribeAction(s_, s_.programs[q].actions[qi]), q, rank_[q].pos);
      }
      lines.push_back(absl::StrFormat("rank %d position %d (before %s)%s", r, st.pos, what, waits));
    }
    return absl::InvalidArgumentError(absl::StrCat("deadlock: ", absl::StrJoin(lines, "; ")));
  }

  SimResult Finish() {
    SimResult out;
    out.ranks.resize(s_.ranks);
    std::vector<int> copies(s_.ranks, 0);
    for (const Placement& pl : s_.placement) ++copies[pl.rank];
    for (int r = 0; r < s_.ranks; ++r) out.makespan = std::max(out.makespan, rank_[r].clock);
    for (int r = 0; r < s_.ranks; ++r) {
      RankStats& st = out.ranks[r];
      st.busy = rank_[r].busy;
      st.finish = rank_[r].clock;
      st.idle = out.makespan - st.busy;
      st.peak_activations = rank_[r].peak;
      st.peak_activation_bytes = rank_[r].peak * o_.cost.activation_bytes;
      st.params_fraction = static_cast<double>(copies[r]) / s_.stages;
      out.bubble = std::max(out.bubble, st.idle);
    }
    out.bubble_ratio = out.makespan > 0 ? out.bubble / out.makespan : 0;
    if (!timed_ || !o_.timeline) return out;
    // The critical path ends at the compute that finishes last.
    int32_t last = -1;
    double last_end = -1;
    for (int r = 0; r < s_.ranks; ++r) {
      const std::vector<Action>& p = s_.programs[r].actions;
      for (int i = 0; i < static_cast<int>(p.size()); ++i) {
        if (IsCompute(p[i].op) && timeline_[r][i].end > last_end) {
          last_end = timeline_[r][i].end;
          last = static_cast<int32_t>(m_.offset[r] + i);
        }
      }
    }
    for (int32_t id = last; id >= 0; id = cause_[id]) {
      const int r = m_.rank_of[id];
      out.critical_path.emplace_back(r, static_cast<int>(id - m_.offset[r]));
    }
    std::reverse(out.critical_path.begin(), out.critical_path.end());
    out.timeline = std::move(timeline_);
    return out;
  }

  const Schedule& s_;
  const SimOptions& o_;
  const double transfer_ = o_.cost.TransferTime();
  const MessageIndex& m_;
  const bool timed_;
  std::vector<OpState> state_;  // per op
  std::vector<int> waiter_;      // per kAwaited op: the rank that waits
  std::vector<double> post_;    // timed: when each op was posted
  std::vector<int32_t> post_cause_, cause_;
  std::vector<std::vector<Interval>> timeline_;
  std::vector<RankState> rank_;
  std::vector<int> batch_base_;  // rank r's batches are [batch_base_[r], batch_base_[r + 1])
  std::vector<Span> posts_;      // each rank's batches in position order
  std::vector<Wait> waits_;      // each rank's batches by wait_before
  std::vector<Span> span_;       // Prepare: the current rank's batches
  std::vector<int> order_;       // Prepare: them by first position
  std::vector<int> bucket_;      // Prepare: counting sort of the waits
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const Schedule& s, const SimOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckShape(s));
  if (!s.lowered) {
    TANDEM_ASSIGN_OR_RETURN(Schedule lowered, Lower(s));
    return Simulate(lowered, options);
  }
  TANDEM_ASSIGN_OR_RETURN(const MessageIndex m, MatchMessages(s));
  return Engine(s, m, options).Run();
}

absl::Status CheckRendezvous(const Schedule& s, const MessageIndex& m) {
  if (!s.lowered) return absl::FailedPreconditionError("deadlock check: schedule is not lowered");
  const SimOptions options;
  return Engine(s, m, options, /*timed=*/false).Run().status();
}

}  // namespace tandem::schedule
