#include "schedule/simulator/cost_model.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tandem::schedule {
namespace {

double At(const std::vector<double>& v, int stage) { return v.size() == 1 ? v[0] : v[stage]; }

}  // namespace

namespace {

// The phase programs of action `a` (both for F&B); false when one is missing.
bool ProgramsOf(const PhaseCosts& p, const Action& a, const PhaseProgram** first, const PhaseProgram** second) {
  switch (a.op) {
    case Op::kForward:
      *first = p.Program('F', a.stage);
      return *first != nullptr;
    case Op::kBackward:
      *first = p.Program('B', a.stage);
      return *first != nullptr;
    case Op::kBackwardInput:
      *first = p.Program('I', a.stage);
      return *first != nullptr;
    case Op::kBackwardWeight:
      *first = p.Program('W', a.stage);
      return *first != nullptr;
    case Op::kForwardBackward:
      *first = p.Program('F', a.stage);
      *second = p.Program('B', a.stage_b);
      return *first != nullptr && *second != nullptr;
    default:
      return false;
  }
}

}  // namespace

PhaseTimeline CostModel::Phases(const Action& a) const {
  const PhaseProgram *first = nullptr, *second = nullptr;
  if (phases != nullptr && ProgramsOf(*phases, a, &first, &second)) {
    return second != nullptr ? SimulatePair(*first, *second, *phases) : SimulatePass(*first, *phases);
  }
  return {Duration(a), {}};
}

double CostModel::Duration(const Action& a) const {
  const PhaseProgram *first = nullptr, *second = nullptr;
  if (phases != nullptr && ProgramsOf(*phases, a, &first, &second)) return Phases(a).duration;
  switch (a.op) {
    case Op::kForward:
      return At(f, a.stage);
    case Op::kBackward:
      return At(b, a.stage);
    case Op::kBackwardInput:
      return At(i, a.stage);
    case Op::kBackwardWeight:
      return At(w, a.stage);
    case Op::kForwardBackward:
      return fb.empty() ? At(f, a.stage) + At(b, a.stage_b) : At(fb, a.stage);
    default:
      return 0.0;
  }
}

CostModel CostModel::Scaled(double factor) const {
  CostModel c = *this;  // phases keep their own times
  for (std::vector<double>* v : {&c.f, &c.b, &c.i, &c.w, &c.fb}) {
    for (double& x : *v) x *= factor;
  }
  return c;
}

absl::StatusOr<CostModel> ParseCost(absl::string_view spec) {
  CostModel c;
  std::set<std::string> seen;
  // At most 40 characters of what was given.
  auto excerpt = [](absl::string_view s) {
    return s.size() <= 40 ? std::string(s) : absl::StrCat(s.substr(0, 40), "... (", s.size(), " characters)");
  };
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::string key = excerpt(absl::StripAsciiWhitespace(kv.first));
    if (!seen.insert(key).second) return absl::InvalidArgumentError(absl::StrFormat("cost %s: given twice", key));
    std::vector<double> values;
    for (absl::string_view v : absl::StrSplit(kv.second, ':')) {
      double x;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(v), &x) || !(x >= 0 && x <= kMaxCostValue)) {
        return absl::InvalidArgumentError(absl::StrFormat("cost %s: expected a finite number in [0, %g], got '%s'", key,
                                                          kMaxCostValue, excerpt(kv.second)));
      }
      values.push_back(x);
    }
    std::vector<double>* per_stage = key == "F"    ? &c.f
                                     : key == "B"  ? &c.b
                                     : key == "I"  ? &c.i
                                     : key == "W"  ? &c.w
                                     : key == "FB" ? &c.fb
                                                   : nullptr;
    if (per_stage != nullptr) {
      *per_stage = values;
      continue;
    }
    double* scalar = key == "p2p_latency"        ? &c.p2p_latency
                     : key == "p2p_bandwidth"    ? &c.p2p_bandwidth
                     : key == "message_bytes"    ? &c.message_bytes
                     : key == "activation_bytes" ? &c.activation_bytes
                                                 : nullptr;
    if (scalar == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("cost: unknown key '%s' (expected F, B, I, W, FB, p2p_latency, "
                          "p2p_bandwidth, message_bytes, activation_bytes)",
                          key));
    }
    if (values.size() != 1) {
      return absl::InvalidArgumentError(absl::StrFormat("cost %s: expected one value, got %d", key, values.size()));
    }
    *scalar = values[0];
  }
  return c;
}

std::string FormatCost(const CostModel& c) {
  std::string out = absl::StrCat("F=", absl::StrJoin(c.f, ":"), ",B=", absl::StrJoin(c.b, ":"),
                                 ",I=", absl::StrJoin(c.i, ":"), ",W=", absl::StrJoin(c.w, ":"));
  if (!c.fb.empty()) absl::StrAppend(&out, ",FB=", absl::StrJoin(c.fb, ":"));
  return out;
}

}  // namespace tandem::schedule
