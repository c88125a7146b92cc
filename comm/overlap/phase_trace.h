// -----------------------------------------------------------------------------
// File: phase_trace.h
// -----------------------------------------------------------------------------
//
// What phased tasks (phased_task.h) did, in order: each step of each chain,
// the operations they posted and waited for, and labelled compute spans.
// The runner records steps; tasks record the rest through the trace they
// were given. One thread records at a time.
//
// Summarize() turns a window of events into the figures of an overlapped
// pair: wall time, compute (steps minus their waits) and time spent blocked.
#ifndef TANDEM_COMM_OVERLAP_PHASE_TRACE_H_
#define TANDEM_COMM_OVERLAP_PHASE_TRACE_H_

#include <chrono>
#include <string>
#include <vector>

namespace tandem::comm {

struct PhaseEvent {
  enum class Kind : uint8_t {
    kStepBegin,     // the runner starts a Step() of `chain`
    kStepEnd,       // ... and it returned
    kPost,          // a task posted operation `what`
    kWaitBegin,     // a task starts waiting for `what`
    kWaitEnd,       // ... and it completed
    kComputeBegin,  // labelled compute `what` starts
    kComputeEnd,    // ... and ends
  };
  Kind kind;
  int chain = 0;
  std::string what;
  std::chrono::steady_clock::time_point at;
};

class PhaseTrace {
 public:
  // The chain whose events follow (the runner sets it before each step).
  void set_chain(int chain) { chain_ = chain; }
  int chain() const { return chain_; }

  void Record(PhaseEvent::Kind kind, std::string what = "");
  const std::vector<PhaseEvent>& events() const { return events_; }
  void Clear() { events_.clear(); }

 private:
  int chain_ = 0;
  std::vector<PhaseEvent> events_;
};

struct PhaseTotals {
  double wall_us = 0;     // first step begin to last step end
  double compute_us = 0;  // steps minus the waits inside them
  double wait_us = 0;     // blocked on posted operations
  int posts = 0;
};

// One exchange as a trace shows it: posted, and its result in hand.
struct ExchangeSpan {
  int chain = 0;
  std::string what;
  std::chrono::steady_clock::time_point posted, done;
};

// ExchangeSpans()
//
// Each post paired with the end of the wait for it (same chain and label),
// in posting order; a post never waited for is left out.
std::vector<ExchangeSpan> ExchangeSpans(const std::vector<PhaseEvent>& events);

// Summarize()
//
// The totals of the events in [from, to] (e.g. one F&B pair's).
PhaseTotals Summarize(const std::vector<PhaseEvent>& events, std::chrono::steady_clock::time_point from,
                      std::chrono::steady_clock::time_point to);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_OVERLAP_PHASE_TRACE_H_
