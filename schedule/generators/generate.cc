#include "schedule/generators/generate.h"

#include <algorithm>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "schedule/generators/dualpipe.h"

namespace tandem::schedule {
namespace {

absl::Status Rule(absl::string_view field, absl::string_view expected, Kind kind, int got) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: expected %s for %s, got %d", field, expected, KindName(kind), got));
}

absl::Status CheckParameters(const GenerateOptions& o, int chunks) {
  const Kind k = o.kind;
  if (k == Kind::kCustom) {
    return absl::InvalidArgumentError("kind: custom schedules are written by hand, not generated");
  }
  if (o.ranks < 1) return Rule("ranks", ">= 1", k, o.ranks);
  if (o.microbatches < 1) return Rule("microbatches", ">= 1", k, o.microbatches);
  if (chunks > kMaxChunks) return Rule("chunks", absl::StrFormat("<= %d", kMaxChunks), k, chunks);
  const int copies = k == Kind::kDualPipe ? 2 : chunks;
  if (int64_t{o.ranks} * copies * o.microbatches > kMaxStagePasses) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ranks x stages per rank x microbatches: expected at most %d, got %d x %d x %d for %s",
                        kMaxStagePasses, o.ranks, copies, o.microbatches, KindName(k)));
  }
  switch (k) {
    case Kind::kInterleaved1F1B:
    case Kind::kLoopedBFS:
    case Kind::kZB1P:
      if (chunks < 1) return Rule("chunks", ">= 1", k, chunks);
      break;
    case Kind::kZBV:
    case Kind::kDualPipeV:
      if (chunks != 2) return Rule("chunks", "2 (two stages per rank in a V)", k, chunks);
      break;
    default:
      if (chunks != 1 && k != Kind::kDualPipe) {
        return Rule("chunks", "1 (one stage per rank)", k, chunks);
      }
      if (k == Kind::kDualPipe && o.chunks != 0 && o.chunks != 2) {
        return Rule("chunks", "2 (one stage copy per direction)", k, o.chunks);
      }
  }
  const int n = o.microbatches, r = o.ranks;
  switch (k) {
    case Kind::k1F1B:
      if (n < r) return Rule("microbatches", absl::StrFormat(">= the number of stages (%d)", r), k, n);
      break;
    case Kind::kInterleaved1F1B:
    case Kind::kZB1P: {
      const int rounds = std::max(1, n / r);
      if (n % rounds != 0) {
        return Rule("microbatches",
                    absl::StrFormat("a multiple of the number of rounds (%d = "
                                    "max(1, microbatches / ranks))",
                                    rounds),
                    k, n);
      }
      break;
    }
    case Kind::kDualPipe:
      if (r % 2 != 0) return Rule("ranks", "an even number", k, r);
      if (n % 2 != 0) return Rule("microbatches", "an even number", k, n);
      if (n < 2 * r) return Rule("microbatches", absl::StrFormat(">= 2 * ranks (%d)", 2 * r), k, n);
      break;
    case Kind::kDualPipeV:
      if (n < 2 * r) return Rule("microbatches", absl::StrFormat(">= 2 * ranks (%d)", 2 * r), k, n);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

void Push(std::vector<Action>& ops, Op op, int stage, int mb) { ops.push_back(Action::Compute(op, stage, mb)); }

// ScheduleGPipe: all forwards, then all backwards.
void GPipe(int r, int n, std::vector<Action>& ops) {
  for (int m = 0; m < n; ++m) Push(ops, Op::kForward, r, m);
  for (int m = 0; m < n; ++m) Push(ops, Op::kBackward, r, m);
}

// Schedule1F1B: min(n, p - r) warm-up forwards, then B/F pairs, then B's.
void OneFOneB(int p, int r, int n, std::vector<Action>& ops) {
  const int warmup = std::min(n, p - r);
  int f = 0, b = 0;
  for (; f < warmup; ++f) Push(ops, Op::kForward, r, f);
  while (b < n) {
    Push(ops, Op::kBackward, r, b++);
    if (f < n) Push(ops, Op::kForward, r, f++);
  }
}

// ScheduleInterleaved1F1B (factor 2, full backward) and
// ScheduleInterleavedZeroBubble (factor 1, I with W lagging `rank` ops).
void Interleaved(int p, int v, int r, int n, bool zero_bubble, std::vector<Action>& ops) {
  const int rounds = std::max(1, n / p);
  const int per_round = n / rounds;
  const int total = n * v;
  const int factor = zero_bubble ? 1 : 2;
  const int warmup = std::min((v - 1) * per_round + factor * (p - 1 - r), total);
  auto fwd_stage = [&](int k) { return ((k / per_round) % v) * p + r; };
  auto bwd_stage = [&](int k) { return (v - 1 - ((k - warmup) / per_round) % v) * p + r; };
  std::vector<int> f_mb(v * p, 0), b_mb(v * p, 0), w_mb(v * p, 0);
  int weights = 0;  // W ops emitted (zero bubble)
  auto weight = [&](int k) {
    const int s = bwd_stage(k);
    Push(ops, Op::kBackwardWeight, s, w_mb[s]++);
    ++weights;
  };
  // Op k is a forward while k < total and a backward once k >= warmup.
  for (int k = 0; k < warmup + total; ++k) {
    if (k < total) {
      const int s = fwd_stage(k);
      Push(ops, Op::kForward, s, f_mb[s]++);
    }
    if (k >= warmup) {
      const int s = bwd_stage(k);
      Push(ops, zero_bubble ? Op::kBackwardInput : Op::kBackward, s, b_mb[s]++);
      if (zero_bubble && k - warmup >= r) weight(k - r);
    }
  }
  while (zero_bubble && weights < total) weight(warmup + weights);
}

// ScheduleLoopedBFS: every forward of each local stage, then every backward
// of each local stage in reverse.
void LoopedBFS(int p, int v, int r, int n, std::vector<Action>& ops) {
  for (int k = 0; k < v; ++k) {
    for (int m = 0; m < n; ++m) Push(ops, Op::kForward, k * p + r, m);
  }
  for (int k = v - 1; k >= 0; --k) {
    for (int m = n - 1; m >= 0; --m) Push(ops, Op::kBackward, k * p + r, m);
  }
}

// ScheduleZBVZeroBubble: warm-up, stable and cool-down phases on the two V
// stages; actions for micro-batches >= n (when n < 2p - 1) are dropped.
void ZBV(int p, int r, int n, std::vector<Action>& ops) {
  const int padded = std::max(2 * p - 1, n);
  const int s0 = r, s1 = 2 * p - 1 - r;
  int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
  auto emit = [&](Op op, int stage, int mb) {
    if (mb < n) Push(ops, op, stage, mb);
  };
  for (int i = 0; i < 2 * (p - r) - 1; ++i) emit(Op::kForward, s0, f0++);
  for (int i = 0; i < r; ++i) {
    emit(Op::kForward, s1, f1++);
    emit(Op::kForward, s0, f0++);
  }
  for (int i = 0; i < p - r; ++i) {
    emit(Op::kForward, s1, f1++);
    emit(Op::kBackwardInput, s1, b1);
    emit(Op::kBackwardWeight, s1, b1++);
  }
  while (f1 < f0 || f0 < padded) {
    if (f0 < padded) emit(Op::kForward, s0, f0++);
    emit(Op::kBackwardInput, s0, b0);
    emit(Op::kBackwardWeight, s0, b0++);
    emit(Op::kForward, s1, f1++);
    emit(Op::kBackwardInput, s1, b1);
    emit(Op::kBackwardWeight, s1, b1++);
  }
  int w0 = b0, w1 = b1;
  for (int i = 0; i < r; ++i) {
    emit(Op::kBackwardInput, s0, b0++);
    emit(Op::kBackwardInput, s1, b1++);
  }
  for (int i = 0; i < p - r; ++i) {
    emit(Op::kBackwardInput, s0, b0++);
    emit(Op::kBackwardWeight, s0, w0++);
  }
  while (w1 < b1) emit(Op::kBackwardWeight, s1, w1++);
  while (w0 < b0) emit(Op::kBackwardWeight, s0, w0++);
}

}  // namespace

int ChunksFor(const GenerateOptions& o) {
  if (o.chunks != 0) return o.chunks;
  switch (o.kind) {
    case Kind::kInterleaved1F1B:
    case Kind::kLoopedBFS:
    case Kind::kZBV:
    case Kind::kDualPipe:
    case Kind::kDualPipeV:
      return 2;
    default:
      return 1;
  }
}

absl::StatusOr<Schedule> Generate(const GenerateOptions& o) {
  const int v = ChunksFor(o);
  if (absl::Status s = CheckParameters(o, v); !s.ok()) return s;
  const int p = o.ranks, n = o.microbatches;
  switch (o.kind) {
    case Kind::kDualPipe:
    case Kind::kDualPipeV:
      return TraceDualPipe(o.kind, p, n, /*with_comm=*/false);
    case Kind::kZBV: {
      TANDEM_ASSIGN_OR_RETURN(Schedule s, MakeShell(o.kind, p, n, 2));
      for (int r = 0; r < p; ++r) ZBV(p, r, n, s.programs[r].actions);
      return s;
    }
    case Kind::kGPipe:
    case Kind::k1F1B: {
      TANDEM_ASSIGN_OR_RETURN(Schedule s, MakeShell(o.kind, p, n, 1));
      for (int r = 0; r < p; ++r) {
        if (o.kind == Kind::kGPipe) {
          GPipe(r, n, s.programs[r].actions);
        } else {
          OneFOneB(p, r, n, s.programs[r].actions);
        }
      }
      return s;
    }
    default: {  // Looped placements.
      TANDEM_ASSIGN_OR_RETURN(Schedule s, MakeShell(o.kind, p, n, v));
      for (int r = 0; r < p; ++r) {
        std::vector<Action>& ops = s.programs[r].actions;
        ops.reserve(int64_t{3} * n * v);
        if (o.kind == Kind::kLoopedBFS) {
          LoopedBFS(p, v, r, n, ops);
        } else {
          Interleaved(p, v, r, n, o.kind == Kind::kZB1P, ops);
        }
      }
      return s;
    }
  }
}

}  // namespace tandem::schedule
