#include "schedule/simulator/simulator.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/speeds.h"
#include "base/status_macros.h"
#include "schedule/ir/matching.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/rendezvous.h"

namespace tandem::schedule {
namespace {

// The simulator's clocks for the rendezvous engine (validator/rendezvous.h):
// compute takes the cost model's time, a batch completes when its
// operations' partners have posted, plus the transfer time.
class Clocks {
 public:
  static constexpr bool kTimed = true;

  Clocks(const Schedule& s, const MessageIndex& m, const SimOptions& o) : s_(s), m_(m), o_(o) {
    post_.assign(m_.size(), 0);
    rank_.assign(s_.ranks, {});
    if (o_.timeline) {
      exchanges_.resize(s_.ranks);
      post_cause_.assign(m_.size(), -1);
      cause_.assign(m_.size(), -1);
      timeline_.resize(s_.ranks);
      for (int r = 0; r < s_.ranks; ++r) timeline_[r].resize(s_.programs[r].actions.size());
    }
  }

  bool NeedsPartner(bool send) const { return !(o_.semantics == CommSemantics::kBuffered && send); }

  void Compute(int r, int pos, int32_t id) {
    RankState& st = rank_[r];
    const Action& a = s_.programs[r].actions[pos];
    double d;
    if (o_.cost.phases != nullptr && o_.timeline) {
      PhaseTimeline t = o_.cost.Phases(a);
      d = t.duration;
      for (PhaseSpan& span : t.exchanges) {
        span.start += st.clock;
        span.end += st.clock;
        exchanges_[r].push_back(std::move(span));
      }
    } else {
      d = o_.cost.Duration(a);
    }
    if (!o_.cost.rank_speed.empty()) d /= o_.cost.rank_speed[r];
    if (o_.timeline) {
      timeline_[r][pos] = {st.clock, st.clock + d};
      cause_[id] = st.cause;
    }
    st.clock += d;
    st.cause = id;
    st.busy += d;
    if (a.op == Op::kForward || a.op == Op::kForwardBackward) ++st.live;
    st.peak = std::max(st.peak, st.live);
    if (IsInputBackward(a.op) || a.op == Op::kForwardBackward) --st.live;
  }

  void Post(int r, int pos, int32_t id) {
    post_[id] = rank_[r].clock;
    if (o_.timeline) {
      post_cause_[id] = rank_[r].cause;
      timeline_[r][pos].start = rank_[r].clock;
    }
  }

  void Complete(int r, int pos, int32_t id, int32_t partner, bool send) {
    RankState& st = rank_[r];
    const double mine = post_[id];
    double done;
    if (!NeedsPartner(send)) {
      done = mine;
    } else if (o_.semantics == CommSemantics::kBuffered) {
      done = std::max(mine, post_[partner] + transfer_);
    } else {
      done = std::max(mine, post_[partner]) + transfer_;
    }
    if (o_.timeline) timeline_[r][pos].end = done;
    if (done > st.clock) {
      st.clock = done;
      if (o_.timeline) st.cause = post_cause_[partner];
    }
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
    if (!o_.timeline) return out;
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
    out.exchanges = std::move(exchanges_);
    return out;
  }

 private:
  struct RankState {
    double clock = 0;
    int32_t cause = -1;  // global id of the compute that set `clock`
    int live = 0;        // stage-activations held
    int peak = 0;
    double busy = 0;
  };

  const Schedule& s_;
  const MessageIndex& m_;
  const SimOptions& o_;
  const double transfer_ = o_.cost.TransferTime();
  std::vector<double> post_;  // when each op was posted
  std::vector<int32_t> post_cause_, cause_;
  std::vector<std::vector<Interval>> timeline_;
  std::vector<std::vector<PhaseSpan>> exchanges_;
  std::vector<RankState> rank_;
};

absl::Status CheckCostLists(const CostModel& cost, int stages, int ranks) {
  for (const std::vector<double>* v : {&cost.f, &cost.b, &cost.i, &cost.w, &cost.fb}) {
    if (!v->empty() && v->size() != 1 && static_cast<int>(v->size()) != stages) {
      return absl::InvalidArgumentError(
          absl::StrFormat("cost: per-stage list has %d values, expected 1 or %d (stages)", v->size(), stages));
    }
  }
  if (!cost.rank_speed.empty() && static_cast<int>(cost.rank_speed.size()) != ranks) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cost: rank_speed has %d values, expected %d (ranks)", cost.rank_speed.size(), ranks));
  }
  return CheckSpeeds("cost: rank_speed", cost.rank_speed);
}

}  // namespace

absl::StatusOr<SimResult> Simulate(const Schedule& s, const SimOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckShape(s));
  if (!s.lowered) {
    TANDEM_ASSIGN_OR_RETURN(Schedule lowered, Lower(s));
    return Simulate(lowered, options);
  }
  TANDEM_RETURN_IF_ERROR(CheckCostLists(options.cost, s.stages, s.ranks));
  if (options.cost.phases != nullptr) TANDEM_RETURN_IF_ERROR(options.cost.phases->Validate(s.stages));
  TANDEM_ASSIGN_OR_RETURN(const MessageIndex m, MatchMessages(s));
  Clocks clocks(s, m, options);
  TANDEM_RETURN_IF_ERROR(RendezvousEngine<Clocks>(s, m, &clocks).Run());
  return clocks.Finish();
}

}  // namespace tandem::schedule
