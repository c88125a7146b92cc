// -----------------------------------------------------------------------------
// File: overlap_report.h
// -----------------------------------------------------------------------------
//
// The figures of an overlapped F&B pair, from what was recorded while it
// ran: the pair's phase trace (comm/overlap) and the emulated network's
// modeled operations (comm/emulated). For the pair's window [from, to]:
//   fb_ms            the pair's wall time (to - from)
//   compute_ms       the wall time of its compute phases (steps minus waits)
//   comm_ms          the modeled duration of its exchanges, each alone
//                    (ModeledOp::alone_us, the figure the simulator uses)
//   hidden_fraction  clamp(1 - (fb_ms - compute_ms) / comm_ms, 0, 1), only
//                    when comm_ms > 0
//   predicted_fb_ms  the simulator's phase model of the same pair: the
//                    recorded compute phases and modeled exchanges replayed
//                    on a virtual clock, interleaved (schedule::SimulatePair)
//                    or one pass after the other, as the pair ran
#ifndef TANDEM_TRAIN_OVERLAP_REPORT_H_
#define TANDEM_TRAIN_OVERLAP_REPORT_H_

#include <chrono>
#include <optional>
#include <vector>

#include "comm/emulated/emulated_network.h"
#include "comm/overlap/phase_trace.h"
#include "schedule/simulator/phase_program.h"

namespace tandem::train {

struct PairOverlap {
  double fb_ms = 0;
  double compute_ms = 0;
  double comm_ms = 0;
  std::optional<double> hidden_fraction;
  double predicted_fb_ms = 0;
};

// PhasesOf()
//
// Chain `chain`'s phases in [from, to] as a program: compute between its
// events, each post with the modeled time of the matching operation in
// `exchanges` (the window's expert-parallel operations in posting order,
// both chains'; matched in posting order), each wait.
schedule::PhaseProgram PhasesOf(const std::vector<comm::PhaseEvent>& events, int chain,
                                std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to,
                                const std::vector<comm::ModeledOp>& exchanges);

// PairFigures()
//
// The figures above for the pair in [from, to]; `log` is the rank's
// emulated operations (ops named all_to_all* count as its exchanges);
// `interleaved`: whether the pair ran overlapped.
PairOverlap PairFigures(const std::vector<comm::PhaseEvent>& events, std::chrono::steady_clock::time_point from,
                        std::chrono::steady_clock::time_point to, const std::vector<comm::ModeledOp>& log,
                        bool interleaved);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_OVERLAP_REPORT_H_
