#include "comm/overlap/phase_trace.h"

#include <algorithm>

namespace tandem::comm {

void PhaseTrace::Record(PhaseEvent::Kind kind, std::string what) {
  events_.push_back({kind, chain_, std::move(what), std::chrono::steady_clock::now()});
}

std::vector<ExchangeSpan> ExchangeSpans(const std::vector<PhaseEvent>& events) {
  std::vector<ExchangeSpan> out;
  std::vector<bool> closed;
  for (const PhaseEvent& e : events) {
    if (e.kind == PhaseEvent::Kind::kPost) {
      out.push_back({e.chain, e.what, e.at, e.at});
      closed.push_back(false);
    } else if (e.kind == PhaseEvent::Kind::kWaitEnd) {
      for (size_t i = 0; i < out.size(); ++i) {
        if (!closed[i] && out[i].chain == e.chain && out[i].what == e.what) {
          out[i].done = e.at;
          closed[i] = true;
          break;
        }
      }
    }
  }
  std::vector<ExchangeSpan> waited;
  for (size_t i = 0; i < out.size(); ++i) {
    if (closed[i]) waited.push_back(out[i]);
  }
  return waited;
}

PhaseTotals Summarize(const std::vector<PhaseEvent>& events, std::chrono::steady_clock::time_point from,
                      std::chrono::steady_clock::time_point to) {
  using K = PhaseEvent::Kind;
  auto us = [](std::chrono::steady_clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  PhaseTotals t;
  std::chrono::steady_clock::time_point step, wait, first = to, last = from;
  for (const PhaseEvent& e : events) {
    if (e.at < from || e.at > to) continue;
    switch (e.kind) {
      case K::kStepBegin:
        step = e.at;
        first = std::min(first, e.at);
        break;
      case K::kStepEnd:
        t.compute_us += us(e.at - step);
        last = std::max(last, e.at);
        break;
      case K::kWaitBegin:
        wait = e.at;
        break;
      case K::kWaitEnd:
        t.wait_us += us(e.at - wait);
        break;
      case K::kPost:
        ++t.posts;
        break;
      default:
        break;
    }
  }
  t.compute_us -= t.wait_us;
  t.wall_us = last > first ? us(last - first) : 0;
  return t;
}

}  // namespace tandem::comm
