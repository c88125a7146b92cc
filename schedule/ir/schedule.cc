#include "schedule/ir/schedule.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tandem::schedule {
namespace {

constexpr absl::string_view kTraceTokens[] = {
#define TANDEM_OP_TRACE(e, trace, torch) trace,
    TANDEM_SCHEDULE_OPS(TANDEM_OP_TRACE)
#undef TANDEM_OP_TRACE
};
constexpr absl::string_view kTorchTokens[] = {
#define TANDEM_OP_TORCH(e, trace, torch) torch,
    TANDEM_SCHEDULE_OPS(TANDEM_OP_TORCH)
#undef TANDEM_OP_TORCH
};
constexpr absl::string_view kKindNames[] = {"gpipe", "1f1b",     "interleaved1f1b", "loopedbfs", "zb1p",
                                            "zbv",   "dualpipe", "dualpipev",       "custom"};

}  // namespace

// Out-of-range values (a corrupted in-memory schedule) name themselves "?".
template <size_t N>
absl::string_view Lookup(const absl::string_view (&names)[N], int i) {
  return i >= 0 && i < static_cast<int>(N) ? names[i] : "?";
}

absl::string_view TraceToken(Op op) { return Lookup(kTraceTokens, static_cast<int>(op)); }
absl::string_view TorchToken(Op op) { return Lookup(kTorchTokens, static_cast<int>(op)); }
absl::string_view KindName(Kind kind) { return Lookup(kKindNames, static_cast<int>(kind)); }

absl::StatusOr<Kind> ParseKind(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (int k = 0; k <= static_cast<int>(Kind::kCustom); ++k) {
    if (lower == kKindNames[k]) return static_cast<Kind>(k);
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("kind: unknown schedule kind '%s' (expected one of %s)", name, absl::StrJoin(kKindNames, ", ")));
}

const std::vector<Kind>& GeneratedKinds() {
  static const auto* kinds = new std::vector<Kind>{Kind::kGPipe, Kind::k1F1B, Kind::kInterleaved1F1B, Kind::kLoopedBFS,
                                                   Kind::kZB1P,  Kind::kZBV,  Kind::kDualPipe,        Kind::kDualPipeV};
  return *kinds;
}

int32_t Schedule::StageAt(int rank, int chunk, int* direction) const {
  for (int i = 0; i < static_cast<int>(placement.size()); ++i) {
    if (placement[i].rank == rank && placement[i].chunk == chunk) {
      *direction = i / stages;
      return i % stages;
    }
  }
  return -1;
}

int64_t Schedule::TotalActions() const {
  int64_t n = 0;
  for (const RankProgram& p : programs) n += p.actions.size();
  return n;
}

std::vector<Placement> DualPipePlacement(int ranks) {
  std::vector<Placement> p(2 * ranks);
  for (int r = 0; r < ranks; ++r) {
    p[r] = {r, 0};                        // direction 0, stage r
    p[ranks + (ranks - 1 - r)] = {r, 1};  // direction 1, stage R-1-r
  }
  return p;
}

std::vector<Placement> VPlacement(int ranks) {
  std::vector<Placement> p(2 * ranks);
  for (int r = 0; r < ranks; ++r) {
    p[r] = {r, 0};
    p[2 * ranks - 1 - r] = {r, 1};
  }
  return p;
}

std::vector<Placement> LoopedPlacement(int ranks, int chunks) {
  std::vector<Placement> p(ranks * chunks);
  for (int s = 0; s < ranks * chunks; ++s) p[s] = {s % ranks, s / ranks};
  return p;
}

int FixedChunks(Kind kind) {
  switch (kind) {
    case Kind::kDualPipe:
    case Kind::kDualPipeV:
    case Kind::kZBV:
      return 2;
    case Kind::kGPipe:
    case Kind::k1F1B:
      return 1;
    default:
      return 0;
  }
}

absl::StatusOr<Schedule> MakeShell(Kind kind, int ranks, int microbatches, int chunks) {
  constexpr int kMax = 1 << 20;
  if (ranks < 1 || ranks > kMax) {
    return absl::InvalidArgumentError(absl::StrFormat("ranks: expected 1..%d, got %d", kMax, ranks));
  }
  if (microbatches < 1 || microbatches > kMax) {
    return absl::InvalidArgumentError(absl::StrFormat("microbatches: expected 1..%d, got %d", kMax, microbatches));
  }
  const int fixed = FixedChunks(kind);
  if (fixed != 0 && chunks != fixed) {
    return absl::InvalidArgumentError(
        absl::StrFormat("chunks: expected %d for %s, got %d", fixed, KindName(kind), chunks));
  }
  if (chunks < 1 || int64_t{chunks} * ranks > kMax) {
    return absl::InvalidArgumentError(absl::StrFormat("chunks: expected 1..%d per rank, got %d", kMax / ranks, chunks));
  }
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.microbatches = microbatches;
  s.chunks = chunks;
  switch (kind) {
    case Kind::kDualPipe:
      if (microbatches % 2 != 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("microbatches: expected an even number for dualpipe, got %d", microbatches));
      }
      s.stages = ranks;
      s.directions = 2;
      s.placement = DualPipePlacement(ranks);
      break;
    case Kind::kDualPipeV:
    case Kind::kZBV:
      s.stages = 2 * ranks;
      s.placement = VPlacement(ranks);
      break;
    default:
      s.stages = ranks * chunks;
      s.placement = LoopedPlacement(ranks, chunks);
  }
  s.programs.resize(ranks);
  return s;
}

absl::Status CheckShape(const Schedule& s) {
  if (s.ranks < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("ranks: expected >= 1, got %d", s.ranks));
  }
  if (s.stages < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("stages: expected >= 1, got %d", s.stages));
  }
  if (s.directions != 1 && s.directions != 2) {
    return absl::InvalidArgumentError(absl::StrFormat("directions: expected 1 or 2, got %d", s.directions));
  }
  if (s.microbatches < 1 || s.microbatches % s.directions != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "microbatches: expected a positive multiple of directions (%d), got %d", s.directions, s.microbatches));
  }
  if (s.chunks < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("chunks: expected >= 1, got %d", s.chunks));
  }
  if (static_cast<int64_t>(s.placement.size()) != int64_t{s.directions} * s.stages) {
    return absl::InvalidArgumentError(absl::StrFormat("placement: expected %d entries (directions x stages), got %d",
                                                      s.directions * s.stages, s.placement.size()));
  }
  std::vector<int> used(int64_t{s.ranks} * s.chunks, -1);
  for (int i = 0; i < static_cast<int>(s.placement.size()); ++i) {
    const Placement& p = s.placement[i];
    if (p.rank < 0 || p.rank >= s.ranks || p.chunk < 0 || p.chunk >= s.chunks) {
      return absl::InvalidArgumentError(
          absl::StrFormat("placement of stage %d direction %d: rank %d chunk %d outside %d "
                          "ranks x %d chunks",
                          i % s.stages, i / s.stages, p.rank, p.chunk, s.ranks, s.chunks));
    }
    int& slot = used[p.rank * s.chunks + p.chunk];
    if (slot >= 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("placement: rank %d chunk %d holds both stage %d direction %d and "
                          "stage %d direction %d",
                          p.rank, p.chunk, slot % s.stages, slot / s.stages, i % s.stages, i / s.stages));
    }
    slot = i;
  }
  if (static_cast<int>(s.programs.size()) != s.ranks) {
    return absl::InvalidArgumentError(
        absl::StrFormat("programs: expected one per rank (%d), got %d", s.ranks, s.programs.size()));
  }
  return absl::OkStatus();
}

Schedule ComputeOnly(const Schedule& lowered) {
  Schedule s = lowered;
  s.lowered = false;
  for (RankProgram& p : s.programs) {
    p.batches.clear();
    std::vector<Action> compute;
    compute.reserve(p.actions.size());
    for (const Action& a : p.actions) {
      if (IsCompute(a.op)) compute.push_back(a);
    }
    p.actions = std::move(compute);
  }
  return s;
}

std::string DescribeAction(const Schedule& s, const Action& a) {
  auto part = [&](int stage, int mb, int dir) {
    return s.directions == 2 ? absl::StrFormat("s%d d%d mb%d", stage, dir, mb) : absl::StrFormat("s%d mb%d", stage, mb);
  };
  std::string out = absl::StrCat(TorchToken(a.op), " ", part(a.stage, a.mb, a.direction));
  if (a.op == Op::kForwardBackward) {
    absl::StrAppend(&out, " / B ", part(a.stage_b, a.mb_b, a.direction_b));
  }
  if (IsSend(a.op)) absl::StrAppend(&out, " -> r", a.peer);
  if (IsRecv(a.op)) absl::StrAppend(&out, " <- r", a.peer);
  return out;
}

}  // namespace tandem::schedule
