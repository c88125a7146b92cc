// -----------------------------------------------------------------------------
// File: load_recorder.h
// -----------------------------------------------------------------------------
//
// Per-layer, per-expert token counts collected while a MoE model runs, as
// input for RebalanceExperts (eplb.h). Counts of the current step accumulate
// until EndStep(); then the step enters a sliding window of the last
// `window_steps` steps and an exponential moving average.
//
// Thread safety: all methods may be called concurrently. Record() calls for
// different layers do not contend; EndStep() briefly locks every layer.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto recorder, LoadRecorder::Create({58, 256}));
//   recorder->RecordRouted(layer, topk_ids);   // from each MoE layer
//   recorder->EndStep();                       // once per forward pass
//   LoadRecorder::Snapshot s = recorder->TakeSnapshot();
//   RebalanceExperts(s.window_weights(), 288, 8, 4, 32);

#ifndef TANDEM_BALANCE_LOAD_RECORDER_H_
#define TANDEM_BALANCE_LOAD_RECORDER_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "balance/placement.h"

namespace tandem::balance {

class LoadRecorder {
 public:
  struct Options {
    int num_layers = 0;
    int num_experts = 0;
    // Steps in the sliding window; memory is window_steps * layers *
    // experts * 4 bytes.
    int window_steps = 1000;
    // Weight of the newest step in the moving average, in (0, 1]; the first
    // step initialises the average.
    double ema_alpha = 0.01;
  };

  struct Snapshot {
    int num_layers = 0;
    int num_experts = 0;
    int64_t steps = 0;            // steps ended so far
    int64_t window_steps = 0;     // of which in the window
    std::vector<int64_t> window;  // [layers][experts] sums over the window
    std::vector<float> ema;       // [layers][experts] moving average

    // Views for RebalanceExperts; valid while this Snapshot lives.
    Weights window_weights() const { return Weights::Int64(window, num_layers, num_experts); }
    Weights ema_weights() const { return Weights::Float32(ema, num_layers, num_experts); }
  };

  // LoadRecorder::Create()
  //
  // kInvalidArgument naming the bad option (non-positive sizes, alpha not
  // in (0, 1], more than 2^24 counts per step or a window over 4 GiB).
  static absl::StatusOr<std::unique_ptr<LoadRecorder>> Create(const Options& options);

  // LoadRecorder::Record()
  //
  // Adds `counts` (num_experts values >= 0) to `layer` in the current step.
  // kInvalidArgument on a bad layer, size or count, or if a count of the
  // step would exceed 2^31 - 1; nothing is added then.
  absl::Status Record(int layer, absl::Span<const int64_t> counts);

  // LoadRecorder::RecordRouted()
  //
  // Adds one token per entry of `expert_ids` (e.g. a batch's flattened
  // top-k routing) to `layer` in the current step. Errors as Record().
  absl::Status RecordRouted(int layer, absl::Span<const int32_t> expert_ids);
  // As above for int64 ids (PyTorch's top-k indices), and for a braced list.
  absl::Status RecordRouted(int layer, absl::Span<const int64_t> expert_ids);
  absl::Status RecordRouted(int layer, std::initializer_list<int32_t> expert_ids) {
    return RecordRouted(layer, absl::Span<const int32_t>(expert_ids));
  }

  // LoadRecorder::EndStep()
  //
  // Closes the current step: it enters the window (the oldest step leaves
  // once the window is full) and the moving average; a new step begins.
  void EndStep();

  // LoadRecorder::TakeSnapshot()
  //
  // The window sums and the moving average as of the last EndStep().
  Snapshot TakeSnapshot() const;

  // LoadRecorder::WindowSteps()
  //
  // The steps in the window, oldest first, each [layers][experts] (for
  // checkpoints: Record() and EndStep() them in order into a new recorder
  // to get the same window).
  std::vector<std::vector<int64_t>> WindowSteps() const;

 private:
  explicit LoadRecorder(const Options& options);

  // One layer's counts of the current step, under its own lock.
  struct Layer {
    absl::Mutex mu;
    std::vector<int64_t> counts ABSL_GUARDED_BY(mu);
  };

  absl::Status CheckLayer(int layer) const;
  template <typename Id>
  absl::Status RecordIds(int layer, absl::Span<const Id> expert_ids);
  // Adds one step's `counts` (num_experts values) to `layer` if they fit.
  absl::Status Add(int layer, const std::vector<int64_t>& counts);

  const Options options_;
  std::vector<std::unique_ptr<Layer>> layers_;

  mutable absl::Mutex mu_;
  // ring_[slot]: one ended step, [layers][experts], as int32.
  std::vector<std::vector<int32_t>> ring_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> window_sum_ ABSL_GUARDED_BY(mu_);
  std::vector<double> ema_ ABSL_GUARDED_BY(mu_);
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tandem::balance

#endif  // TANDEM_BALANCE_LOAD_RECORDER_H_
