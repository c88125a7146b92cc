// -----------------------------------------------------------------------------
// File: sleep.h
// -----------------------------------------------------------------------------
//
// SleepUntil(): waits until a steady-clock time with tens of microseconds
// of precision: a plain sleep to just before it, then yields (a plain sleep
// overshoots by tens of microseconds, which adds up along a chain of waits).
// Used where waiting stands for work: emulated compute and network time.
#ifndef TANDEM_BASE_SLEEP_H_
#define TANDEM_BASE_SLEEP_H_

#include <chrono>
#include <thread>

namespace tandem {

inline void SleepUntil(std::chrono::steady_clock::time_point until) {
  const auto margin = std::chrono::microseconds(300);
  const auto now = std::chrono::steady_clock::now();
  if (until - now > margin) std::this_thread::sleep_for(until - now - margin);
  while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
}

}  // namespace tandem

#endif  // TANDEM_BASE_SLEEP_H_
