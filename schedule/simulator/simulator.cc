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

constexpr double kUnposted = -1.0;

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
    double clock = 0;
    int32_t cause = -1;  // global id of the compute that set `clock`
    int32_t waiting_on = -1;
    bool done = false;
    int live = 0;  // stage-activations held
    int peak = 0;
    double busy = 0;
  };

  absl::Status Prepare() {
    for (const std::vector<double>* v : {&o_.cost.f, &o_.cost.b, &o_.cost.i, &o_.cost.w, &o_.cost.fb}) {
      if (!v->empty() && v->size() != 1 && static_cast<int>(v->size()) != s_.stages) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "cost: per-stage list has %d values, expected 1 or %d (stages)", v->size(), s_.stages));
      }
    }
    const int ranks = s_.ranks;
    if (timed_) {
      post_.assign(m_.size(), kUnposted);
    } else {
      posted_.assign(m_.size(), 0);
    }
    rank_.assign(ranks, {});
    if (timed_ && o_.timeline) {
      post_cause_.assign(m_.size(), -1);
      cause_.assign(m_.size(), -1);
      timeline_.resize(ranks);
    }
    batch_first_.resize(ranks);
    batch_size_.resize(ranks);
    wait_start_.resize(ranks);
    wait_batches_.resize(ranks);
    for (int r = 0; r < ranks; ++r) {
      const RankProgram& p = s_.programs[r];
      const int n = static_cast<int>(p.actions.size());
      const int nb = static_cast<int>(p.batches.size());
      if (timed_ && o_.timeline) timeline_[r].resize(n);
      std::vector<int>& first = batch_first_[r];
      std::vector<int>& size = batch_size_[r];
      first.assign(nb, -1);
      size.assign(nb, 0);
      for (int i = 0; i < n; ++i) {
        const Action& a = p.actions[i];
        if (!IsComm(a.op)) continue;
        if (a.batch < 0 || a.batch >= nb) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d position %d (%s): batch: expected 0..%d, got %d", r, i, DescribeAction(s_, a), nb - 1,
              a.batch));
        }
        if (first[a.batch] < 0) {
          first[a.batch] = i;
        } else if (first[a.batch] + size[a.batch] != i) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d position %d (%s): batch %d is not contiguous", r, i, DescribeAction(s_, a), a.batch));
        }
        ++size[a.batch];
      }
      // Waits: CSR by wait_before.
      std::vector<int>& start = wait_start_[r];
      start.assign(n + 2, 0);
      for (int b = 0; b < nb; ++b) {
        const int at = p.batches[b].wait_before;
        if (first[b] < 0 || at < first[b] + size[b] || at > n) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d batch %d: wait_before %d outside [end of batch, %d]", r, b, at, n));
        }
        ++start[at + 1];
      }
      for (int i = 0; i <= n; ++i) start[i + 1] += start[i];
      std::vector<int>& order = wait_batches_[r];
      order.resize(nb);
      std::vector<int> fill(start.begin(), start.end() - 1);
      for (int b = 0; b < nb; ++b) order[fill[p.batches[b].wait_before]++] = b;
    }
    return absl::OkStatus();
  }

  // Completion of op `id`, or kUnposted if its partner is not posted yet.
  double Completion(int32_t id, bool send) const {
    const double mine = post_[id];
    const double theirs = post_[m_.partner[id]];
    if (o_.semantics == CommSemantics::kBuffered && send) return mine;
    if (theirs == kUnposted) return kUnposted;
    if (o_.semantics == CommSemantics::kBuffered) return std::max(mine, theirs + transfer_);
    return std::max(mine, theirs) + transfer_;
  }

  // Runs rank r until it blocks or finishes. Untimed: a wait completes once
  // the partner has posted (rendezvous), and compute takes no time.
  template <bool kTimed>
  void Advance(int r, std::vector<int>* work) {
    RankState& st = rank_[r];
    if (st.done) return;
    st.waiting_on = -1;
    const RankProgram& p = s_.programs[r];
    const int n = static_cast<int>(p.actions.size());
    const int32_t base = static_cast<int32_t>(m_.offset[r]);
    const int* wait_start = wait_start_[r].data();
    const int* wait_batches = wait_batches_[r].data();
    const int* batch_first = batch_first_[r].data();
    const int* batch_size = batch_size_[r].data();
    const Action* actions = p.actions.data();
    Interval* timeline = kTimed && o_.timeline ? timeline_[r].data() : nullptr;
    while (true) {
      // Waits due before position st.pos.
      for (int k = wait_start[st.pos]; k < wait_start[st.pos + 1]; ++k) {
        const int b = wait_batches[k];
        const int first = batch_first[b];
        for (int i = first; i < first + batch_size[b]; ++i) {
          const int32_t id = base + i;
          if (!kTimed) {
            if (!posted_[m_.partner[id]]) {
              st.waiting_on = m_.partner[id];
              return;
            }
            continue;
          }
          const double done = Completion(id, IsSend(actions[i].op));
          if (done == kUnposted) {
            st.waiting_on = m_.partner[id];
            return;  // blocked; woken when the partner posts
          }
          if (timeline != nullptr) timeline[i].end = done;
          if (done > st.clock) {
            st.clock = done;
            if (timeline != nullptr) st.cause = post_cause_[m_.partner[id]];
          }
        }
      }
      if (st.pos == n) break;
      const Action& a = actions[st.pos];
      if (IsComm(a.op)) {
        // Post the whole batch; wake partners waiting for these ops.
        const int size = batch_size[a.batch];
        for (int i = st.pos; i < st.pos + size; ++i) {
          const int32_t id = base + i;
          if (kTimed) {
            post_[id] = st.clock;
          } else {
            posted_[id] = 1;
          }
          if (timeline != nullptr) {
            post_cause_[id] = st.cause;
            timeline[i].start = st.clock;
          }
          const int32_t partner = m_.partner[id];
          RankState& q = rank_[m_.rank_of[partner]];
          if (q.waiting_on == id) {
            q.waiting_on = -1;
            work->push_back(m_.rank_of[partner]);
          }
        }
        st.pos += size;
        continue;
      }
      if (!kTimed) {
        ++st.pos;
        continue;
      }
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
  std::vector<double> post_;  // timed: when each op was posted
  std::vector<char> posted_;  // untimed: whether it was
  std::vector<int32_t> post_cause_, cause_;
  std::vector<std::vector<Interval>> timeline_;
  std::vector<RankState> rank_;
  std::vector<std::vector<int>> batch_first_, batch_size_, wait_start_, wait_batches_;
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
