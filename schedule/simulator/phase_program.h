// -----------------------------------------------------------------------------
// File: phase_program.h
// -----------------------------------------------------------------------------
//
// What a pass (F, B, I or W of a stage) does with time, phase by phase:
// compute, and the expert-parallel exchanges it posts and later waits for,
// in the order the model's passes run them (model/moe_layer.h). From these
// the simulator derives F, B, I, W and F&B durations, with compute and
// network as two resources per rank: the rank computes one phase at a time;
// its exchanges leave through one egress, first come first served, each
// taking latency + (ep - 1) x bytes / bandwidth (an all-to-all's blocks to
// its ep - 1 peers, as the emulated network models it); an F&B pair
// interleaves its two passes exactly as the executor does (comm::Interleave
// over the same programs, on a virtual clock). EmulatedPhasedStageWork
// (executor/stage_work.h) runs the same programs for real.
//
// Example (a forward whose dispatch hides the shared expert, and in an F&B
// the other pass's next step):
//   PhaseProgram f = {PhaseStep::Compute(300, "router"), PhaseStep::Post(0, 1 << 20, "dispatch"),
//                     PhaseStep::Compute(200, "shared"), PhaseStep::Yield(), PhaseStep::Wait(0),
//                     PhaseStep::Compute(900, "experts")};
#ifndef TANDEM_SCHEDULE_SIMULATOR_PHASE_PROGRAM_H_
#define TANDEM_SCHEDULE_SIMULATOR_PHASE_PROGRAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comm/emulated/link.h"

namespace tandem::schedule {

struct PhaseStep {
  enum class Kind : uint8_t { kCompute, kPost, kWait, kYield };
  Kind kind = Kind::kCompute;
  double us = 0;      // kCompute: its time; kPost: the exchange's time if > 0 (else from bytes)
  int64_t bytes = 0;  // kPost: bytes to each EP peer
  int exchange = 0;   // kPost, kWait: which exchange of the pass
  std::string label;

  static PhaseStep Compute(double us, std::string label = "") { return {Kind::kCompute, us, 0, 0, std::move(label)}; }
  static PhaseStep Post(int exchange, int64_t bytes, std::string label = "") {
    return {Kind::kPost, 0, bytes, exchange, std::move(label)};
  }
  static PhaseStep PostTimed(int exchange, double us, std::string label = "") {
    return {Kind::kPost, us, 0, exchange, std::move(label)};
  }
  static PhaseStep Wait(int exchange) { return {Kind::kWait, 0, 0, exchange, ""}; }
  // Ends the pass's step (comm::PhasedTask::Step()): in an F&B the other
  // pass runs next. Without yields a pass runs to its end in one step.
  static PhaseStep Yield() { return {Kind::kYield, 0, 0, 0, ""}; }
};

using PhaseProgram = std::vector<PhaseStep>;

struct PhaseCosts {
  // Per stage; a single entry applies to every stage; empty: nothing (0).
  std::vector<PhaseProgram> f, b, i, w;
  comm::Link ep_link;  // between the EP ranks of a stage
  int ep = 1;          // EP ranks per stage

  // The modeled time of exchange step `s` (latency + (ep - 1) bytes / bw,
  // or its own time).
  double ExchangeUs(const PhaseStep& s) const;
  const PhaseProgram* Program(char op, int stage) const;  // op: 'F', 'B', 'I', 'W'

  // Validate()
  //
  // kInvalidArgument naming the pass and step: lists of another length
  // than 1 or `stages`, negative or non-finite times, an exchange waited
  // before it is posted, posted twice, or never waited for.
  absl::Status Validate(int stages) const;
};

// An exchange on the network resource: [start, end) from the pass's start.
struct PhaseSpan {
  int chain = 0;  // 0: the pass (an F&B's forward), 1: an F&B's backward
  double start = 0;
  double end = 0;
  std::string label;
};

struct PhaseTimeline {
  double duration = 0;
  std::vector<PhaseSpan> exchanges;
};

// SimulatePass(), SimulatePair()
//
// One pass alone, and an F&B pair (F first, interleaved at their yields),
// on the virtual clock of one rank. The programs must be valid.
PhaseTimeline SimulatePass(const PhaseProgram& pass, const PhaseCosts& costs);
PhaseTimeline SimulatePair(const PhaseProgram& f, const PhaseProgram& b, const PhaseCosts& costs);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_SIMULATOR_PHASE_PROGRAM_H_
