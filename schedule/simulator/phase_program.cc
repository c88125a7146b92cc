#include "schedule/simulator/phase_program.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_format.h"
#include "comm/overlap/phased_task.h"

namespace tandem::schedule {
namespace {

// One rank's two resources on a virtual clock.
struct VirtualRank {
  double clock = 0;     // compute: when the next phase can start
  double net_free = 0;  // the egress: free from
  std::vector<PhaseSpan> spans;
};

// A program as a phased task on the virtual clock: computes advance the
// clock, a post reserves the egress, a wait catches up with the exchange.
class VirtualPass : public comm::PhasedTask {
 public:
  VirtualPass(const PhaseProgram& p, const PhaseCosts& c, VirtualRank* rank, int chain)
      : p_(p), c_(c), rank_(rank), chain_(chain) {}

  // Runs up to the next yield or the end.
  absl::StatusOr<bool> Step() override {
    while (next_ < p_.size()) {
      const PhaseStep& s = p_[next_++];
      switch (s.kind) {
        case PhaseStep::Kind::kYield:
          if (next_ < p_.size()) return false;
          break;
        case PhaseStep::Kind::kCompute:
          rank_->clock += s.us;
          break;
        case PhaseStep::Kind::kWait:
          rank_->clock = std::max(rank_->clock, end_[s.exchange]);
          break;
        case PhaseStep::Kind::kPost: {
          const double start = std::max(rank_->clock, rank_->net_free);
          const double end = start + c_.ExchangeUs(s);
          rank_->net_free = end;
          end_[s.exchange] = end;
          rank_->spans.push_back({chain_, start, end, s.label});
          break;
        }
      }
    }
    return true;
  }

 private:
  const PhaseProgram& p_;
  const PhaseCosts& c_;
  VirtualRank* rank_;
  const int chain_;
  size_t next_ = 0;
  std::map<int, double> end_;
};

absl::Status CheckProgram(const PhaseProgram& p, const char* name, int stage) {
  std::set<int> posted, waited;
  for (size_t k = 0; k < p.size(); ++k) {
    const PhaseStep& s = p[k];
    auto bad = [&](const char* what) {
      return absl::InvalidArgumentError(absl::StrFormat("phases: %s of stage %d, step %d: %s", name, stage, k, what));
    };
    if (!std::isfinite(s.us) || s.us < 0 || s.bytes < 0) return bad("expected finite times and bytes >= 0");
    if (s.kind == PhaseStep::Kind::kPost && !posted.insert(s.exchange).second) return bad("exchange posted twice");
    if (s.kind == PhaseStep::Kind::kWait) {
      if (!posted.count(s.exchange)) return bad("waits for an exchange not posted before");
      if (!waited.insert(s.exchange).second) return bad("exchange waited for twice");
    }
  }
  if (posted.size() != waited.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("phases: %s of stage %d: every posted exchange must be waited for", name, stage));
  }
  return absl::OkStatus();
}

}  // namespace

double PhaseCosts::ExchangeUs(const PhaseStep& s) const {
  if (s.us > 0) return s.us;
  return ep_link.latency_us + ep_link.SerializationUs(int64_t{std::max(ep - 1, 0)} * s.bytes);
}

const PhaseProgram* PhaseCosts::Program(char op, int stage) const {
  const std::vector<PhaseProgram>* list = op == 'F' ? &f : op == 'B' ? &b : op == 'I' ? &i : &w;
  if (list->empty()) return nullptr;
  return &(*list)[list->size() == 1 ? 0 : stage];
}

absl::Status PhaseCosts::Validate(int stages) const {
  if (ep < 1) return absl::InvalidArgumentError(absl::StrFormat("phases: ep: expected >= 1, got %d", ep));
  const struct {
    const char* name;
    const std::vector<PhaseProgram>* list;
  } passes[] = {{"F", &f}, {"B", &b}, {"I", &i}, {"W", &w}};
  for (const auto& pass : passes) {
    const size_t n = pass.list->size();
    if (n > 1 && static_cast<int>(n) != stages) {
      return absl::InvalidArgumentError(
          absl::StrFormat("phases: %s: expected 1 or %d (stages) programs, got %d", pass.name, stages, n));
    }
    for (size_t s = 0; s < n; ++s) {
      absl::Status st = CheckProgram((*pass.list)[s], pass.name, static_cast<int>(s));
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

PhaseTimeline SimulatePass(const PhaseProgram& pass, const PhaseCosts& costs) {
  VirtualRank rank;
  VirtualPass task(pass, costs, &rank, 0);
  (void)comm::RunToEnd(task);  // virtual tasks do not fail
  return {rank.clock, std::move(rank.spans)};
}

PhaseTimeline SimulatePair(const PhaseProgram& f, const PhaseProgram& b, const PhaseCosts& costs) {
  VirtualRank rank;
  VirtualPass forward(f, costs, &rank, 0), backward(b, costs, &rank, 1);
  (void)comm::Interleave(forward, backward);
  return {rank.clock, std::move(rank.spans)};
}

}  // namespace tandem::schedule
