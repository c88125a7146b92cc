// -----------------------------------------------------------------------------
// File: generate.h
// -----------------------------------------------------------------------------
//
// Generates the compute-only program of every schedule kind, op for op as its
// reference does: DeepSeek's DualPipe/DualPipeV step loops and PyTorch's
// torch.distributed.pipelining generators (GPipe, 1F1B, Interleaved1F1B,
// LoopedBFS, InterleavedZeroBubble = zb1p, ZBVZeroBubble = zbv). PyTorch's
// idle steps (None) are not kept: programs hold only actions.
//
// Example:
//   absl::StatusOr<Schedule> s = Generate({Kind::kDualPipeV, /*ranks=*/4,
//                                          /*microbatches=*/10});

#ifndef TANDEM_SCHEDULE_GENERATORS_GENERATE_H_
#define TANDEM_SCHEDULE_GENERATORS_GENERATE_H_

#include "absl/status/statusor.h"
#include "schedule/ir/schedule.h"

namespace tandem::schedule {

// Bounds on what Generate() accepts, so that a schedule's size (and memory)
// is known to be modest before it is built: stage copies per rank, and
// ranks x stage copies per rank x micro-batches (each a forward and a
// backward pass to schedule).
inline constexpr int kMaxChunks = 64;
inline constexpr int64_t kMaxStagePasses = int64_t{1} << 22;

struct GenerateOptions {
  Kind kind = Kind::k1F1B;
  int ranks = 1;
  int microbatches = 1;  // in total (DualPipe: both directions together)
  // Local stages per rank for looped kinds (interleaved1f1b, loopedbfs,
  // zb1p); 0 picks the default: 2 for interleaved1f1b and loopedbfs, 1 for
  // zb1p (ZB-H1). Must be 0 or 2 for zbv and dualpipev, 0 or 1 otherwise.
  int chunks = 0;
};

// Generate()
//
// The compute-only schedule of `options.kind`. Parameters the kind rejects
// give kInvalidArgument naming the violated rule, as the reference asserts,
// e.g. "microbatches: expected an even number for dualpipe, got 7".
absl::StatusOr<Schedule> Generate(const GenerateOptions& options);

// The local-chunk count Generate() uses for `options` (after defaults).
int ChunksFor(const GenerateOptions& options);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_GENERATORS_GENERATE_H_
