// -----------------------------------------------------------------------------
// File: cost_model.h
// -----------------------------------------------------------------------------
//
// Durations and sizes for the schedule simulator: per-stage F, B (full
// backward), I (input gradient), W (weight gradient) and FB (an overlapped
// forward and full backward) times, point-to-point latency and bandwidth, and
// the bytes of one message and of one stage-activation. A single value per
// op applies to every stage. With `phases` (phase_program.h) the F, B, I, W
// and F&B durations come from the passes' compute and expert-parallel
// exchanges instead of the scalars.
//
// Example:
//   absl::StatusOr<CostModel> c = ParseCost("F=1,B=2,I=1,W=1,FB=3");

#ifndef TANDEM_SCHEDULE_SIMULATOR_COST_MODEL_H_
#define TANDEM_SCHEDULE_SIMULATOR_COST_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/phase_program.h"

namespace tandem::schedule {

struct CostModel {
  // Indexed by stage; one entry means "every stage". Empty fb: f + b.
  std::vector<double> f = {1.0};
  std::vector<double> b = {2.0};
  std::vector<double> i = {1.0};
  std::vector<double> w = {1.0};
  std::vector<double> fb;
  double p2p_latency = 0.0;
  double p2p_bandwidth = 0.0;     // bytes per time unit; 0 = infinite
  double message_bytes = 0.0;     // one activation or gradient message
  double activation_bytes = 0.0;  // one micro-batch's activations of one stage
  // When set, compute durations (and the exchanges inside them) come from
  // these phases, for every op that has a program (the others keep the
  // scalars).
  std::shared_ptr<const PhaseCosts> phases;
  // Relative speed per rank (> 0; empty: all 1): rank r's compute takes
  // its duration / rank_speed[r] (devices of unequal speed).
  std::vector<double> rank_speed;

  // Duration of compute action `a`.
  double Duration(const Action& a) const;
  // With phases: action `a`'s phase timeline (its exchanges from its start);
  // without (or for an op without a program): its duration alone.
  PhaseTimeline Phases(const Action& a) const;
  // Time one message spends in flight.
  double TransferTime() const { return p2p_latency + (p2p_bandwidth > 0 ? message_bytes / p2p_bandwidth : 0.0); }
  // A copy with every compute duration multiplied by `factor` (stages of a
  // kind with more, smaller stages).
  CostModel Scaled(double factor) const;
};

// Every value ParseCost() accepts is in [0, kMaxCostValue], so sums over a
// schedule's actions stay finite.
inline constexpr double kMaxCostValue = 1e12;

// ParseCost()
//
// Parses "F=1,B=2,I=1,W=1,FB=3,p2p_latency=0.1,p2p_bandwidth=1e9,
// message_bytes=4096,activation_bytes=1e6". Any subset; unknown or repeated
// keys, malformed values and values outside [0, kMaxCostValue] give
// kInvalidArgument naming the key (quoting at most 40 characters). A value
// may be a list "F=1:1:2" (one per stage).
absl::StatusOr<CostModel> ParseCost(absl::string_view spec);

// "F=1,B=2,I=1,W=1,FB=3" (per-stage lists joined with ':').
std::string FormatCost(const CostModel& cost);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_SIMULATOR_COST_MODEL_H_
