#include "balance/load_recorder.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tandem::balance {
namespace {

constexpr int64_t kMaxStepCount = std::numeric_limits<int32_t>::max();
// Counts per step (58 x 256 for DeepSeek-V3), and in the window (4 bytes each).
constexpr int64_t kMaxCells = int64_t{1} << 24;
constexpr int64_t kMaxWindowCells = int64_t{1} << 30;

}  // namespace

absl::StatusOr<std::unique_ptr<LoadRecorder>> LoadRecorder::Create(const Options& options) {
  auto positive = [](const char* name, int value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a positive count, got ", value));
  };
  TANDEM_RETURN_IF_ERROR(positive("num_layers", options.num_layers));
  TANDEM_RETURN_IF_ERROR(positive("num_experts", options.num_experts));
  TANDEM_RETURN_IF_ERROR(positive("window_steps", options.window_steps));
  if (!(options.ema_alpha > 0 && options.ema_alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("ema_alpha: expected a value in (0, 1], got ", options.ema_alpha));
  }
  const int64_t cells = int64_t{options.num_layers} * options.num_experts;
  if (cells > kMaxCells) {
    return absl::InvalidArgumentError(absl::StrCat("num_layers x num_experts: expected at most ", kMaxCells, ", got ",
                                                   options.num_layers, " x ", options.num_experts));
  }
  if (cells * options.window_steps > kMaxWindowCells) {
    return absl::InvalidArgumentError(absl::StrCat("window_steps: expected at most ", kMaxWindowCells / cells, " for ",
                                                   cells, " counts per step (a ", kMaxWindowCells / (1 << 28),
                                                   " GiB window), got ", options.window_steps));
  }
  return std::unique_ptr<LoadRecorder>(new LoadRecorder(options));
}

LoadRecorder::LoadRecorder(const Options& options) : options_(options) {
  const size_t cells = static_cast<size_t>(options.num_layers) * options.num_experts;
  for (int l = 0; l < options.num_layers; ++l) {
    layers_.push_back(std::make_unique<Layer>());
    absl::MutexLock lock(&layers_.back()->mu);
    layers_.back()->counts.assign(options.num_experts, 0);
  }
  absl::MutexLock lock(&mu_);
  window_sum_.assign(cells, 0);
  ema_.assign(cells, 0.0);
}

absl::Status LoadRecorder::CheckLayer(int layer) const {
  if (layer >= 0 && layer < options_.num_layers) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("layer: expected a value in [0, ", options_.num_layers, "), got ", layer));
}

absl::Status LoadRecorder::Record(int layer, absl::Span<const int64_t> counts) {
  TANDEM_RETURN_IF_ERROR(CheckLayer(layer));
  if (static_cast<int>(counts.size()) != options_.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("counts: expected ", options_.num_experts, " values (one per expert), got ", counts.size()));
  }
  // Read once: the caller's buffer may be shared (a NumPy array from Python).
  return Add(layer, std::vector<int64_t>(counts.begin(), counts.end()));
}

absl::Status LoadRecorder::Add(int layer, const std::vector<int64_t>& counts) {
  Layer& l = *layers_[layer];
  absl::MutexLock lock(&l.mu);
  for (int e = 0; e < options_.num_experts; ++e) {
    if (counts[e] < 0 || counts[e] > kMaxStepCount - l.counts[e]) {
      return absl::InvalidArgumentError(absl::StrCat("counts[", e, "]: expected a count in [0, ",
                                                     kMaxStepCount - l.counts[e], "] for this step, got ", counts[e]));
    }
  }
  for (int e = 0; e < options_.num_experts; ++e) l.counts[e] += counts[e];
  return absl::OkStatus();
}

template <typename Id>
absl::Status LoadRecorder::RecordIds(int layer, absl::Span<const Id> expert_ids) {
  TANDEM_RETURN_IF_ERROR(CheckLayer(layer));
  // Each id is read once and counted here; nothing is added unless all are
  // valid and no count of the step would pass the limit.
  std::vector<int64_t> counts(options_.num_experts, 0);
  for (size_t i = 0; i < expert_ids.size(); ++i) {
    const Id e = expert_ids[i];
    if (e < 0 || e >= options_.num_experts) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert_ids[", i, "]: expected an expert in [0, ", options_.num_experts, "), got ", e));
    }
    ++counts[e];
  }
  absl::Status s = Add(layer, counts);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("expert_ids: ", s.message()));
  return absl::OkStatus();
}

absl::Status LoadRecorder::RecordRouted(int layer, absl::Span<const int32_t> expert_ids) {
  return RecordIds(layer, expert_ids);
}

absl::Status LoadRecorder::RecordRouted(int layer, absl::Span<const int64_t> expert_ids) {
  return RecordIds(layer, expert_ids);
}

void LoadRecorder::EndStep() {
  const int experts = options_.num_experts;
  absl::MutexLock lock(&mu_);
  // The slot of the oldest step, reused once the window is full.
  const size_t slot = static_cast<size_t>(steps_ % options_.window_steps);
  if (ring_.size() <= slot) {
    ring_.emplace_back(static_cast<size_t>(options_.num_layers) * experts);
  } else {
    for (size_t i = 0; i < window_sum_.size(); ++i) {
      window_sum_[i] -= ring_[slot][i];
    }
  }
  std::vector<int32_t>& step = ring_[slot];
  for (int l = 0; l < options_.num_layers; ++l) {
    Layer& layer = *layers_[l];
    absl::MutexLock layer_lock(&layer.mu);
    for (int e = 0; e < experts; ++e) {
      step[static_cast<size_t>(l) * experts + e] = static_cast<int32_t>(layer.counts[e]);
      layer.counts[e] = 0;
    }
  }
  const double alpha = steps_ == 0 ? 1.0 : options_.ema_alpha;
  for (size_t i = 0; i < window_sum_.size(); ++i) {
    window_sum_[i] += step[i];
    ema_[i] = alpha * step[i] + (1 - alpha) * ema_[i];
  }
  ++steps_;
}

std::vector<std::vector<int64_t>> LoadRecorder::WindowSteps() const {
  absl::MutexLock lock(&mu_);
  const int64_t held = std::min<int64_t>(steps_, options_.window_steps);
  std::vector<std::vector<int64_t>> out;
  for (int64_t k = steps_ - held; k < steps_; ++k) {
    const std::vector<int32_t>& step = ring_[static_cast<size_t>(k % options_.window_steps)];
    out.emplace_back(step.begin(), step.end());
  }
  return out;
}

LoadRecorder::Snapshot LoadRecorder::TakeSnapshot() const {
  Snapshot s;
  s.num_layers = options_.num_layers;
  s.num_experts = options_.num_experts;
  absl::MutexLock lock(&mu_);
  s.steps = steps_;
  s.window_steps = std::min<int64_t>(steps_, options_.window_steps);
  s.window = window_sum_;
  s.ema.assign(ema_.begin(), ema_.end());
  return s;
}

}  // namespace tandem::balance
