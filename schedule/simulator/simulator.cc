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
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

constexpr double kUnposted = -1.0;

class Engine {
 public:
  Engine(const Schedule& s, const SimOptions& o) : s_(s), o_(o) {}

  absl::StatusOr<SimResult> Run() {
    TANDEM_RETURN_IF_ERROR(Prepare());
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
    return Finish();
  }

 private:
  struct RankState {
    int pos = 0;
    double clock = 0;
    int64_t cause = -1;  // global id of the compute that set `clock`
    int64_t waiting_on = -1;
    bool done = false;
    int live_activations = 0;
  };

  int64_t Id(int rank, int index) const { return offset_[rank] + index; }

  absl::Status Prepare() {
    for (const std::vector<double>* v : {&o_.cost.f, &o_.cost.b, &o_.cost.i, &o_.cost.w, &o_.cost.fb}) {
      if (!v->empty() && v->size() != 1 && static_cast<int>(v->size()) != s_.stages) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "cost: per-stage list has %d values, expected 1 or %d (stages)", v->size(), s_.stages));
      }
    }
    const int ranks = s_.ranks;
    offset_.assign(ranks + 1, 0);
    for (int r = 0; r < ranks; ++r) offset_[r + 1] = offset_[r] + s_.programs[r].actions.size();
    const int64_t total = offset_[ranks];
    post_.assign(total, kUnposted);
    post_cause_.assign(total, -1);
    partner_.assign(total, -1);
    rank_.assign(ranks, {});
    if (o_.timeline) end_.assign(total, 0), start_.assign(total, 0), cause_.assign(total, -1);
    // Batches: first op and size; waits: CSR by wait_before.
    batch_first_.resize(ranks);
    batch_size_.resize(ranks);
    wait_start_.resize(ranks);
    wait_batches_.resize(ranks);
    std::vector<std::vector<int64_t>> sends(int64_t{ranks} * ranks), recvs(int64_t{ranks} * ranks);
    for (int r = 0; r < ranks; ++r) {
      const RankProgram& p = s_.programs[r];
      const int n = static_cast<int>(p.actions.size());
      const int nb = static_cast<int>(p.batches.size());
      batch_first_[r].assign(nb, -1);
      batch_size_[r].assign(nb, 0);
      for (int i = 0; i < n; ++i) {
        const Action& a = p.actions[i];
        if (!IsComm(a.op)) continue;
        if (a.batch < 0 || a.batch >= nb || a.peer < 0 || a.peer >= ranks || a.peer == r) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d position %d (%s): bad batch %d or peer %d", r, i, DescribeAction(s_, a), a.batch, a.peer));
        }
        if (batch_first_[r][a.batch] < 0) {
          batch_first_[r][a.batch] = i;
        } else if (batch_first_[r][a.batch] + batch_size_[r][a.batch] != i) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d position %d (%s): batch %d is not contiguous", r, i, DescribeAction(s_, a), a.batch));
        }
        ++batch_size_[r][a.batch];
        (IsSend(a.op) ? sends[int64_t{r} * ranks + a.peer] : recvs[int64_t{a.peer} * ranks + r]).push_back(Id(r, i));
      }
      wait_start_[r].assign(n + 2, 0);
      for (int b = 0; b < nb; ++b) {
        const int at = p.batches[b].wait_before;
        if (batch_first_[r][b] < 0 || at < batch_first_[r][b] + batch_size_[r][b] || at > n) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d batch %d: wait_before %d outside [end of batch, %d]", r, b, at, n));
        }
        ++wait_start_[r][at + 1];
      }
      for (int i = 0; i <= n; ++i) wait_start_[r][i + 1] += wait_start_[r][i];
      wait_batches_[r].assign(nb, 0);
      std::vector<int> fill(wait_start_[r].begin(), wait_start_[r].end() - 1);
      for (int b = 0; b < nb; ++b) wait_batches_[r][fill[p.batches[b].wait_before]++] = b;
    }
    // The k-th send from a to b matches the k-th receive on b from a.
    for (int a = 0; a < ranks; ++a) {
      for (int b = 0; b < ranks; ++b) {
        const auto& sv = sends[int64_t{a} * ranks + b];
        const auto& rv = recvs[int64_t{a} * ranks + b];
        for (size_t k = 0; k < std::min(sv.size(), rv.size()); ++k) {
          partner_[sv[k]] = rv[k];
          partner_[rv[k]] = sv[k];
        }
        if (sv.size() != rv.size()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rank %d sends %d messages to rank %d, which receives %d", a, sv.size(), b, rv.size()));
        }
      }
    }
    return absl::OkStatus();
  }

  int RankOfId(int64_t id) const {
    return static_cast<int>(std::upper_bound(offset_.begin(), offset_.end(), id) - offset_.begin()) - 1;
  }

  // Completion of op `id`, or kUnposted if its partner is not posted yet.
  double Completion(int64_t id, bool send) const {
    const double mine = post_[id];
    const double theirs = post_[partner_[id]];
    if (o_.semantics == CommSemantics::kBuffered && send) return mine;
    if (theirs == kUnposted) return kUnposted;
    if (o_.semantics == CommSemantics::kBuffered) return std::max(mine, theirs + transfer_);
    return std::max(mine, theirs) + transfer_;
  }

  // Runs rank r until it blocks or finishes.
  void Advance(int r, std::vector<int>* work) {
    RankState& st = rank_[r];
    if (st.done) return;
    st.waiting_on = -1;
    const RankProgram& p = s_.programs[r];
    const int n = static_cast<int>(p.actions.size());
    while (true) {
      // Waits due before position st.pos.
      for (int k = wait_start_[r][st.pos]; k < wait_start_[r][st.pos + 1]; ++k) {
        const int b = wait_batches_[r][k];
        const int first = batch_first_[r][b];
        for (int i = first; i < first + batch_size_[r][b]; ++i) {
          const int64_t id = Id(r, i);
          const double done = Completion(id, IsSend(p.actions[i].op));
          if (done == kUnposted) {
            st.waiting_on = partner_[id];
            return;  // blocked; woken when the partner posts
          }
          if (o_.timeline) end_[id] = done;
          if (done > st.clock) {
            st.clock = done;
            st.cause = post_cause_[partner_[id]];
          }
        }
      }
      if (st.pos == n) break;
      const Action& a = p.actions[st.pos];
      if (IsComm(a.op)) {
        // Post the whole batch; wake partners waiting for these ops.
        const int size = batch_size_[r][a.batch];
        for (int i = st.pos; i < st.pos + size; ++i) {
          const int64_t id = Id(r, i);
          post_[id] = st.clock;
          post_cause_[id] = st.cause;
          if (o_.timeline) start_[id] = st.clock;
          const int q = RankOfId(partner_[id]);
          if (rank_[q].waiting_on == id) {
            rank_[q].waiting_on = -1;
            work->push_back(q);
          }
        }
        st.pos += size;
        continue;
      }
      const double d = o_.cost.Duration(a);
      const int64_t id = Id(r, st.pos);
      if (o_.timeline) {
        start_[id] = st.clock;
        end_[id] = st.clock + d;
        cause_[id] = st.cause;
      }
      st.clock += d;
      st.cause = id;
      busy_[r] += d;
      if (a.op == Op::kForward || a.op == Op::kForwardBackward) ++st.live_activations;
      peak_[r] = std::max(peak_[r], st.live_activations);
      if (IsInputBackward(a.op) || a.op == Op::kForwardBackward) --st.live_activations;
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
      std::string what = st.pos < static_cast<int>(p.actions.size())
                             ? DescribeAction(s_, p.actions[st.pos])
                             : "end of program";
      std::string waits;
      if (st.waiting_on >= 0) {
        const int q = RankOfId(st.waiting_on);
        const int qi = static_cast<int>(st.waiting_on - offset_[q]);
        waits = absl::StrFormat("; waits for rank %d to post position %d (%s), but rank %d is at position %d",
                                q, qi, DescribeAction(s_, s_.programs[q].actions[qi]), q, rank_[q].pos);
      }
      lines.push_back(absl::StrFormat("rank %d position %d (before %s)%s", r, st.pos, what, waits));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("deadlock: ", absl::StrJoin(lines, "; ")));
  }

  SimResult Finish() {
    SimResult out;
    out.ranks.resize(s_.ranks);
    std::vector<int> copies(s_.ranks, 0);
    for (const Placement& pl : s_.placement) ++copies[pl.rank];
    for (int r = 0; r < s_.ranks; ++r) {
      out.makespan = std::max(out.makespan, rank_[r].clock);
    }
    for (int r = 0; r < s_.ranks; ++r) {
      RankStats& st = out.ranks[r];
      st.busy = busy_[r];
      st.finish = rank_[r].clock;
      st.idle = out.makespan - st.busy;
      st.peak_activations = peak_[r];
      st.peak_activation_bytes = peak_[r] * o_.cost.activation_bytes;
      st.params_fraction = static_cast<double>(copies[r]) / s_.stages;
      out.bubble = std::max(out.bubble, st.idle);
    }
    out.bubble_ratio = out.makespan > 0 ? out.bubble / out.makespan : 0;
    if (!o_.timeline) return out;
    out.timeline.resize(s_.ranks);
    int64_t last = -1;
    double last_end = -1;
    for (int r = 0; r < s_.ranks; ++r) {
      const int n = static_cast<int>(s_.programs[r].actions.size());
      out.timeline[r].resize(n);
      for (int i = 0; i < n; ++i) {
        const int64_t id = Id(r, i);
        out.timeline[r][i] = {start_[id], end_[id]};
        if (IsCompute(s_.programs[r].actions[i].op) && end_[id] > last_end) {
          last_end = end_[id];
          last = id;
        }
      }
    }
    for (int64_t id = last; id >= 0; id = cause_[id]) {
      const int r = RankOfId(id);
      out.critical_path.emplace_back(r, static_cast<int>(id - offset_[r]));
    }
    std::reverse(out.critical_path.begin(), out.critical_path.end());
    return out;
  }

  const Schedule& s_;
  const SimOptions& o_;
  const double transfer_ = o_.cost.TransferTime();
  std::vector<int64_t> offset_;
  std::vector<double> post_;
  std::vector<int64_t> post_cause_, partner_, cause_;
  std::vector<double> start_, end_;
  std::vector<RankState> rank_;
  std::vector<std::vector<int>> batch_first_, batch_size_, wait_start_, wait_batches_;
  std::vector<double> busy_ = std::vector<double>(s_.ranks, 0.0);
  std::vector<int> peak_ = std::vector<int>(s_.ranks, 0);
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const Schedule& s, const SimOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckShape(s));
  if (!s.lowered) {
    TANDEM_ASSIGN_OR_RETURN(Schedule lowered, Lower(s));
    return Engine(lowered, options).Run();
  }
  return Engine(s, options).Run();
}

}  // namespace tandem::schedule
