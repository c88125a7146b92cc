#include "schedule/validator/rendezvous.h"

namespace tandem::schedule {
namespace {

// No clocks: only the order of posts and waits.
struct NoTiming {
  static constexpr bool kTimed = false;
  bool NeedsPartner(bool) const { return true; }
  void Compute(int, int, int32_t) {}
  void Post(int, int, int32_t) {}
  void Complete(int, int, int32_t, int32_t, bool) {}
};

}  // namespace

absl::Status CheckRendezvous(const Schedule& s, const MessageIndex& m) {
  if (!s.lowered) return absl::FailedPreconditionError("deadlock check: schedule is not lowered");
  NoTiming none;
  return RendezvousEngine<NoTiming>(s, m, &none).Run();
}

}  // namespace tandem::schedule
