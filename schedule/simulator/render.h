// -----------------------------------------------------------------------------
// File: render.h
// -----------------------------------------------------------------------------
//
// Pictures of a simulated schedule: a per-rank Gantt chart as SVG (in the
// style of the DualPipe figure: colour by action, micro-batch numbers in the
// cells) or ASCII (one cell per time unit, two characters: action and local
// chunk, ".." for idle), and Chrome/Perfetto trace JSON (one process per
// rank with a compute and a communication track, the latter with the
// pipeline's messages and the expert-parallel exchanges; action ids
// "r<rank>.<index>" are shared with the executor's traces).

#ifndef TANDEM_SCHEDULE_SIMULATOR_RENDER_H_
#define TANDEM_SCHEDULE_SIMULATOR_RENDER_H_

#include <string>

#include "absl/status/statusor.h"
#include "schedule/ir/schedule.h"
#include "schedule/simulator/simulator.h"

namespace tandem::schedule {

// `result` must come from Simulate() of `s` itself (lower a compute-only
// schedule first: Simulate() of it times the lowered program).
std::string RenderSvg(const Schedule& s, const SimResult& result);
std::string RenderAscii(const Schedule& s, const SimResult& result);
// Times are written in microseconds: one cost unit = `unit_us`.
// kInvalidArgument when a time is not finite.
absl::StatusOr<std::string> RenderChromeTrace(const Schedule& s, const SimResult& result, double unit_us = 1000.0);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_SIMULATOR_RENDER_H_
