#include "train/overlap_report.h"

#include <algorithm>

#include "absl/strings/match.h"

namespace tandem::train {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = comm::PhaseEvent::Kind;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The window's expert-parallel operations, in posting order.
std::vector<comm::ModeledOp> Exchanges(const std::vector<comm::ModeledOp>& log, Clock::time_point from,
                                       Clock::time_point to) {
  std::vector<comm::ModeledOp> out;
  for (const comm::ModeledOp& op : log) {
    if (op.posted >= from && op.posted <= to && absl::StartsWith(op.name, "all_to_all")) out.push_back(op);
  }
  std::sort(out.begin(), out.end(),
            [](const comm::ModeledOp& a, const comm::ModeledOp& b) { return a.posted < b.posted; });
  return out;
}

}  // namespace

schedule::PhaseProgram PhasesOf(const std::vector<comm::PhaseEvent>& events, int chain, Clock::time_point from,
                                Clock::time_point to, const std::vector<comm::ModeledOp>& exchanges) {
  schedule::PhaseProgram p;
  std::vector<std::pair<std::string, bool>> posted;  // label and waited, by exchange id
  int post_index = 0;                                // across both chains, to match `exchanges`
  Clock::time_point cursor = from;
  auto compute = [&](Clock::time_point at) {
    if (at > cursor) p.push_back(schedule::PhaseStep::Compute(Us(at - cursor)));
    cursor = at;
  };
  for (const comm::PhaseEvent& e : events) {
    if (e.at < from || e.at > to) continue;
    if (e.kind == Kind::kPost) {
      const int k = post_index++;
      if (e.chain != chain) continue;
      compute(e.at);
      const double us = k < static_cast<int>(exchanges.size()) ? exchanges[k].alone_us : 0;
      p.push_back(schedule::PhaseStep::PostTimed(static_cast<int>(posted.size()), std::max(us, 1e-9), e.what));
      posted.emplace_back(e.what, false);
      continue;
    }
    if (e.chain != chain) continue;
    switch (e.kind) {
      case Kind::kStepBegin:
        cursor = e.at;
        break;
      case Kind::kStepEnd:
        compute(e.at);
        p.push_back(schedule::PhaseStep::Yield());
        break;
      case Kind::kWaitBegin:
        compute(e.at);
        break;
      case Kind::kWaitEnd:
        for (size_t id = 0; id < posted.size(); ++id) {
          if (!posted[id].second && posted[id].first == e.what) {
            p.push_back(schedule::PhaseStep::Wait(static_cast<int>(id)));
            posted[id].second = true;
            break;
          }
        }
        cursor = e.at;
        break;
      default:
        break;
    }
  }
  return p;
}

PairOverlap PairFigures(const std::vector<comm::PhaseEvent>& events, Clock::time_point from, Clock::time_point to,
                        const std::vector<comm::ModeledOp>& log, bool interleaved) {
  PairOverlap out;
  out.fb_ms = Us(to - from) / 1000;
  out.compute_ms = comm::Summarize(events, from, to).compute_us / 1000;
  const std::vector<comm::ModeledOp> exchanges = Exchanges(log, from, to);
  for (const comm::ModeledOp& op : exchanges) out.comm_ms += op.alone_us / 1000;
  if (out.comm_ms > 0) {
    out.hidden_fraction = std::clamp(1 - (out.fb_ms - out.compute_ms) / out.comm_ms, 0.0, 1.0);
  }
  schedule::PhaseCosts costs;
  const schedule::PhaseProgram f = PhasesOf(events, 0, from, to, exchanges),
                               b = PhasesOf(events, 1, from, to, exchanges);
  out.predicted_fb_ms =
      (interleaved ? schedule::SimulatePair(f, b, costs).duration
                   : schedule::SimulatePass(f, costs).duration + schedule::SimulatePass(b, costs).duration) /
      1000;
  return out;
}

}  // namespace tandem::train
