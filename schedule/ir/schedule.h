// -----------------------------------------------------------------------------
// File: schedule.h
// -----------------------------------------------------------------------------
//
// The in-memory pipeline schedule: a flat C++ form of schedule.proto that the
// generators, lowering, validator and simulator work on (protobuf is for
// storage and tools; schedule/formats converts).
//
// A Schedule has `ranks` ranks and `stages` model stages; each stage exists
// once per direction (2 directions for DualPipe, else 1) and each copy is
// placed on a (rank, local chunk). Micro-batch ids count per direction:
// global id = direction * microbatches / directions + mb. Each rank runs one
// ordered program of Actions; a lowered program also holds sends and receives,
// each in a Batch that is posted where its first operation stands and must be
// complete before the action at `wait_before`.

#ifndef TANDEM_SCHEDULE_IR_SCHEDULE_H_
#define TANDEM_SCHEDULE_IR_SCHEDULE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::schedule {

// Every op once: enum name, trace token, PyTorch token.
#define TANDEM_SCHEDULE_OPS(V)             \
  V(kForward, "F", "F")                    \
  V(kBackward, "B", "B")                   \
  V(kBackwardInput, "I", "I")              \
  V(kBackwardWeight, "W", "W")             \
  V(kForwardBackward, "FB", "OVERLAP_F_B") \
  V(kSendF, "SF", "SEND_F")                \
  V(kRecvF, "RF", "RECV_F")                \
  V(kSendB, "SB", "SEND_B")                \
  V(kRecvB, "RB", "RECV_B")

enum class Op : uint8_t {
#define TANDEM_OP_ENUM(e, trace, torch) e,
  TANDEM_SCHEDULE_OPS(TANDEM_OP_ENUM)
#undef TANDEM_OP_ENUM
};

absl::string_view TraceToken(Op op);
absl::string_view TorchToken(Op op);
inline bool IsComm(Op op) { return op >= Op::kSendF; }
inline bool IsCompute(Op op) { return op < Op::kSendF; }
inline bool IsSend(Op op) { return op == Op::kSendF || op == Op::kSendB; }
inline bool IsRecv(Op op) { return op == Op::kRecvF || op == Op::kRecvB; }
// B and I end a micro-batch's backward through a stage (they produce the
// input gradient); W only adds the weight gradient.
inline bool IsInputBackward(Op op) { return op == Op::kBackward || op == Op::kBackwardInput; }

enum class Kind : uint8_t {
  kGPipe,
  k1F1B,
  kInterleaved1F1B,
  kLoopedBFS,
  kZB1P,
  kZBV,
  kDualPipe,
  kDualPipeV,
  kCustom,
};

absl::string_view KindName(Kind kind);
absl::StatusOr<Kind> ParseKind(absl::string_view name);
// Every generated kind (all but kCustom), in the order tools list them.
const std::vector<Kind>& GeneratedKinds();

// One entry of a rank's program. For kForwardBackward, (stage, mb, direction)
// is the forward part and (stage_b, mb_b, direction_b) the full backward.
// Sends and receives name the stage of their own side (PyTorch's convention):
// kSendF of stage s goes to the holder of s+1, kRecvF of stage s comes from
// the holder of s-1; kSendB of s goes to s-1, kRecvB of s comes from s+1.
struct Action {
  Op op = Op::kForward;
  int8_t direction = 0;
  int8_t direction_b = 0;
  int32_t stage = 0;
  int32_t mb = 0;
  int32_t stage_b = -1;
  int32_t mb_b = -1;
  int32_t peer = -1;
  int32_t batch = -1;

  static Action Compute(Op op, int stage, int mb, int direction = 0) {
    Action a;
    a.op = op;
    a.stage = stage;
    a.mb = mb;
    a.direction = static_cast<int8_t>(direction);
    return a;
  }
  static Action Overlap(int f_stage, int f_mb, int f_dir, int b_stage, int b_mb, int b_dir) {
    Action a = Compute(Op::kForwardBackward, f_stage, f_mb, f_dir);
    a.stage_b = b_stage;
    a.mb_b = b_mb;
    a.direction_b = static_cast<int8_t>(b_dir);
    return a;
  }
  static Action Comm(Op op, int stage, int mb, int direction, int peer, int batch) {
    Action a = Compute(op, stage, mb, direction);
    a.peer = peer;
    a.batch = batch;
    return a;
  }

  bool operator==(const Action& o) const {
    return op == o.op && direction == o.direction && stage == o.stage && mb == o.mb && stage_b == o.stage_b &&
           mb_b == o.mb_b && direction_b == o.direction_b && peer == o.peer && batch == o.batch;
  }
  bool operator!=(const Action& o) const { return !(*this == o); }
};

struct Batch {
  int32_t wait_before = 0;
  bool operator==(const Batch& o) const { return wait_before == o.wait_before; }
};

struct RankProgram {
  std::vector<Action> actions;
  std::vector<Batch> batches;  // empty in compute-only programs
};

struct Placement {
  int32_t rank = 0;
  int32_t chunk = 0;
};

struct Schedule {
  Kind kind = Kind::kCustom;
  int32_t ranks = 0;
  int32_t stages = 0;
  int32_t microbatches = 0;  // total over both directions
  int32_t directions = 1;
  int32_t chunks = 1;  // local chunks per rank
  bool lowered = false;
  // placement[direction * stages + stage].
  std::vector<Placement> placement;
  std::vector<RankProgram> programs;  // one per rank

  int32_t microbatches_per_direction() const { return microbatches / directions; }
  const Placement& where(int direction, int stage) const { return placement[direction * stages + stage]; }
  int32_t RankOf(int direction, int stage) const { return where(direction, stage).rank; }
  // Stage copy held by (rank, chunk): sets *direction and returns the stage,
  // or -1 when the rank has no such chunk. Linear in the placement size.
  int32_t StageAt(int rank, int chunk, int* direction) const;
  int64_t TotalActions() const;
};

// Placement of kind's stages: dualpipe (stage r dir 0 and stage R-1-r dir 1
// on rank r), v (stage r and 2R-1-r), looped (stage k*R+r at chunk k).
std::vector<Placement> DualPipePlacement(int ranks);
std::vector<Placement> VPlacement(int ranks);
std::vector<Placement> LoopedPlacement(int ranks, int chunks);

// The local-chunk count `kind` fixes: 2 for dualpipe, dualpipev and zbv; 1
// for gpipe and 1f1b; 0 where any count is allowed (looped kinds, custom).
int FixedChunks(Kind kind);

// MakeShell()
//
// Header and placement of `kind` with one empty program per rank: dualpipe
// (two directions, stages = ranks), v for dualpipev and zbv (stages =
// 2 * ranks), looped otherwise (stages = ranks * chunks). Checks the counts
// (not the kind's scheduling rules, which Generate() checks).
absl::StatusOr<Schedule> MakeShell(Kind kind, int ranks, int microbatches, int chunks);

// Checks the header fields and placement (sizes, ranges, each (rank, chunk)
// used at most once) without looking at the programs.
absl::Status CheckShape(const Schedule& s);

// Drops sends, receives and batches, leaving the compute-only program.
Schedule ComputeOnly(const Schedule& lowered);

// "F s3 mb5", "FB s2 mb1 / s5 mb0", "SEND_F s1 mb4 -> r2" (direction shown
// as "d1" when the schedule has two).
std::string DescribeAction(const Schedule& s, const Action& a);

}  // namespace tandem::schedule

#endif  // TANDEM_SCHEDULE_IR_SCHEDULE_H_
