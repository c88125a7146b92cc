#include "plan/memory.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tandem::plan {

absl::StatusOr<std::vector<UnitMemory>> UnitMemories(const model::ModelConfig& c, int ep, int extra_slots) {
  if (ep < 1 || extra_slots < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("memory: expected ep >= 1 and extra_slots >= 0, got ep %d, extra_slots %d", ep, extra_slots));
  }
  const double h = c.hidden, swiglu = 3.0 * h * c.moe_inter;
  const double slots_per_rank = std::ceil(static_cast<double>(c.num_experts + extra_slots) / ep);
  // Per token and unit: inputs, norms, router outputs, expert rows (top_k
  // of them) with their inner activations, the shared expert's (f32).
  const double per_token = 4.0 * (8.0 * h + 2.0 * c.num_experts +
                                  3.0 * (c.top_k + c.num_shared_experts) * (c.moe_inter + h) + 3.0 * c.dense_inter);
  std::vector<UnitMemory> units(model::NumUnits(c));
  units.front().state_bytes = 16.0 * c.input_dim * h;
  units.front().activation_bytes_per_token = 4.0 * (c.input_dim + h);
  units.back().state_bytes = 16.0 * (h + h * c.output_dim);
  units.back().activation_bytes_per_token = 4.0 * (3.0 * h + c.output_dim);
  for (int b = 0; b < c.num_layers; ++b) {
    UnitMemory& u = units[b + 1];
    const double params = b < c.num_dense_layers
                              ? h + 3.0 * h * c.dense_inter
                              : h + h * c.num_experts + (slots_per_rank + c.num_shared_experts) * swiglu;
    u.state_bytes = 16.0 * params;
    u.activation_bytes_per_token = per_token;
  }
  return units;
}

std::vector<int> PeakInFlight(const schedule::Schedule& s) {
  std::vector<int> peak(s.directions * s.stages, 0);
  for (const schedule::RankProgram& p : s.programs) {
    std::vector<int> live(peak.size(), 0);
    // Whether a copy's micro-batch waits for a W (I/W split) before freeing.
    auto copy = [&](int direction, int stage) { return direction * s.stages + stage; };
    std::vector<bool> split(peak.size(), false);
    for (const schedule::Action& a : p.actions) {
      if (a.op == schedule::Op::kBackwardInput) split[copy(a.direction, a.stage)] = true;
    }
    auto add = [&](int c, int delta) {
      live[c] += delta;
      peak[c] = std::max(peak[c], live[c]);
    };
    for (const schedule::Action& a : p.actions) {
      const int c = copy(a.direction, a.stage);
      switch (a.op) {
        case schedule::Op::kForward:
          add(c, 1);
          break;
        case schedule::Op::kBackward:
        case schedule::Op::kBackwardInput:
          if (!split[c] || a.op == schedule::Op::kBackward) add(c, -1);
          break;
        case schedule::Op::kBackwardWeight:
          add(c, -1);
          break;
        case schedule::Op::kForwardBackward:
          add(c, 1);  // the forward's activations exist while the backward runs
          add(copy(a.direction_b, a.stage_b), -1);
          break;
        default:
          break;
      }
    }
  }
  return peak;
}

double CopyBytes(const std::vector<UnitMemory>& units, int begin, int end, int in_flight, int tokens) {
  double state = 0, per_token = 0;
  for (int u = begin; u < end; ++u) {
    state += units[u].state_bytes;
    per_token += units[u].activation_bytes_per_token;
  }
  return state + static_cast<double>(in_flight) * tokens * per_token;
}

absl::Status CheckBounds(const std::vector<int>& bounds, int stages, int units) {
  bool ok = static_cast<int>(bounds.size()) == stages + 1 && bounds.front() == 0 && bounds.back() == units;
  for (size_t i = 1; ok && i < bounds.size(); ++i) ok = bounds[i] > bounds[i - 1];
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("bounds: expected %d increasing unit indices from 0 to %d (%d stages), got [%s]", stages + 1,
                      units, stages, absl::StrJoin(bounds, ", ")));
}

absl::StatusOr<std::vector<double>> RankMemoryBytes(const schedule::Schedule& s, const std::vector<UnitMemory>& units,
                                                    const std::vector<int>& bounds, int tokens) {
  if (absl::Status st = CheckBounds(bounds, s.stages, static_cast<int>(units.size())); !st.ok()) return st;
  const std::vector<int> peak = PeakInFlight(s);
  std::vector<double> bytes(s.ranks, 0.0);
  for (int d = 0; d < s.directions; ++d) {
    for (int st = 0; st < s.stages; ++st) {
      const int r = s.RankOf(d, st);
      if (r < 0) continue;
      bytes[r] += CopyBytes(units, bounds[st], bounds[st + 1], peak[d * s.stages + st], tokens);
    }
  }
  return bytes;
}

}  // namespace tandem::plan
