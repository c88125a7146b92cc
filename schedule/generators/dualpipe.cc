#include "schedule/generators/dualpipe.h"

#include <deque>
#include <utility>
#include <vector>

namespace tandem::schedule {
namespace {

// Replays dualpipe.py / dualpipev.py step() for one rank. Methods mirror the
// reference's chunk helpers; `phase` arguments are the reference's local
// phases, turned into chunks (= direction for DualPipe) by `chunk()`.
class RankTracer {
 public:
  RankTracer(const Schedule& s, bool v, int rank, bool with_comm, RankProgram* out)
      : s_(s), v_(v), rank_(rank), with_comm_(with_comm), out_(out) {
    const int ranks = s.ranks;
    first_rank_ = rank == 0;
    last_rank_ = rank == ranks - 1;
    if (v) {
      half_ranks_ = ranks;
      half_rank_ = rank;
      chunk_xor_ = 0;
      chunks_per_direction_ = s.microbatches;
    } else {
      half_ranks_ = ranks / 2;
      half_rank_ = std::min(rank, ranks - 1 - rank);
      chunk_xor_ = rank >= ranks / 2 ? 1 : 0;
      chunks_per_direction_ = s.microbatches / 2;
    }
    middle_ = half_rank_ == half_ranks_ - 1;
  }

  void Run() {
    const int k = half_ranks_ - half_rank_ - 1;
    const int h = half_rank_;
    // Step 1: nF0.
    for (int i = 0; i < 2 * k; ++i) ForwardChunk(0);
    // Step 2: nF0F1.
    RecvForward(0);
    for (int i = 0; i < h + 1; ++i) {
      ForwardChunk(0, /*recv=*/false, /*send=*/middle_);
      RecvForward(0);
      ForwardChunk(1, /*recv=*/true, /*send=*/!middle_ || i < h);
      if (!middle_) SendForward(0);
    }
    // Step 3: nB1W1F1 (zero bubble).
    for (int i = 0; i < k; ++i) {
      BackwardChunk(1, /*zero_bubble=*/true);
      RecvForward(1);
      WeightChunk();
      ForwardChunk(1, /*recv=*/false);
    }
    // Step 4 (main): nF0B1F1B0.
    const int step4 = chunks_per_direction_ - 2 * half_ranks_ + h + 1;
    for (int i = 0; i < step4; ++i) {
      if (i == 0) {
        if (middle_) {
          // The reference does not overlap this pair, to shrink the bubble.
          ForwardChunk(0, /*recv=*/false, /*send=*/false);
          SendForward(1);
          BackwardChunk(1, /*zero_bubble=*/false, /*recv=*/true, /*send=*/false);
          SendForward(0);
          SendBackward(1);
        } else {
          ForwardBackwardChunk(0, 1, /*recv0=*/false);
        }
      } else {
        ForwardBackwardChunk(0, 1);
      }
      ForwardBackwardChunk(1, 0);
    }
    // Step 5: nB1F1B0.
    for (int i = 0; i < k; ++i) {
      BackwardChunk(1);
      ForwardBackwardChunk(1, 0);
    }
    // Step 6: nB1B0, the second half with zero bubble.
    const int step6 = h + 1;
    bool zero_bubble = false;
    for (int i = 0; i < step6; ++i) {
      if (i == step6 / 2 && h % 2 == 1) zero_bubble = true;
      BackwardChunk(1, zero_bubble);
      if (i == step6 / 2 && h % 2 == 0) zero_bubble = true;
      BackwardChunk(0, zero_bubble);
    }
    // Step 7: nWB0 (zero bubble).
    for (int i = 0; i < k; ++i) {
      WeightChunk();
      BackwardChunk(0, /*zero_bubble=*/true);
    }
    // Step 8: nW.
    for (int i = 0; i < h + 1; ++i) WeightChunk();
    CommitAndWait();
  }

 private:
  int chunk(int phase) const { return phase ^ chunk_xor_; }
  int direction(int c) const { return v_ ? 0 : c; }
  int stage(int c) const {
    if (v_) return c == 0 ? rank_ : 2 * s_.ranks - 1 - rank_;
    return c == 0 ? rank_ : s_.ranks - 1 - rank_;
  }
  // The reference's boundary tests, identical for DualPipe and DualPipeV.
  bool first_stage(int c) const { return (first_rank_ && c == 0) || (last_rank_ && c == 1); }
  bool last_stage(int c) const { return (first_rank_ && c == 1) || (last_rank_ && c == 0); }
  int prev_rank() const { return rank_ - 1; }
  int next_rank() const { return rank_ + 1; }

  // Every compute op follows a CommitAndWait(), so what is queued until the
  // next one lands right after the last compute op: it is appended at once,
  // in the open batch.
  void Queue(Op op, int c, int mb, int peer) {
    if (!with_comm_) return;
    out_->actions.push_back(
        Action::Comm(op, stage(c), mb, direction(c), peer, static_cast<int32_t>(out_->batches.size())));
    queued_ = true;
  }
  void RecvForward(int phase) {
    const int c = chunk(phase);
    if (first_stage(c)) return;
    Queue(Op::kRecvF, c, recv_f_[c]++, c == 0 ? prev_rank() : next_rank());
  }
  void SendForward(int phase) {
    const int c = chunk(phase);
    if (last_stage(c)) return;
    Queue(Op::kSendF, c, send_f_[c]++, c == 0 ? next_rank() : prev_rank());
  }
  void RecvBackward(int phase) {
    const int c = chunk(phase);
    if (last_stage(c)) return;
    Queue(Op::kRecvB, c, recv_b_[c]++, c == 0 ? next_rank() : prev_rank());
  }
  void SendBackward(int phase) {
    const int c = chunk(phase);
    if (first_stage(c)) return;
    Queue(Op::kSendB, c, send_b_[c]++, c == 0 ? prev_rank() : next_rank());
  }

  // One batch_isend_irecv of everything queued, waited on before the next op.
  void CommitAndWait() {
    if (!queued_) return;
    out_->batches.push_back({static_cast<int32_t>(out_->actions.size())});
    queued_ = false;
  }

  void EmitForward(int c) { out_->actions.push_back(Action::Compute(Op::kForward, stage(c), f_[c]++, direction(c))); }
  void EmitBackward(int c, bool zero_bubble) {
    const int mb = b_[c]++;
    if (zero_bubble) w_queue_.emplace_back(c, mb);
    out_->actions.push_back(
        Action::Compute(zero_bubble ? Op::kBackwardInput : Op::kBackward, stage(c), mb, direction(c)));
  }

  void ForwardChunk(int phase, bool recv = true, bool send = true) {
    if (recv) RecvForward(phase);
    CommitAndWait();
    EmitForward(chunk(phase));
    if (send) SendForward(phase);
  }
  void BackwardChunk(int phase, bool zero_bubble = false, bool recv = true, bool send = true) {
    if (recv) RecvBackward(phase);
    CommitAndWait();
    EmitBackward(chunk(phase), zero_bubble);
    if (send) SendBackward(phase);
  }
  void ForwardBackwardChunk(int phase0, int phase1, bool recv0 = true) {
    if (recv0) RecvForward(phase0);
    RecvBackward(phase1);
    CommitAndWait();
    const int c0 = chunk(phase0), c1 = chunk(phase1);
    out_->actions.push_back(Action::Overlap(stage(c0), f_[c0]++, direction(c0), stage(c1), b_[c1]++, direction(c1)));
    SendForward(phase0);
    SendBackward(phase1);
  }
  void WeightChunk() {
    CommitAndWait();
    const auto [c, mb] = w_queue_.front();  // FIFO, as WeightGradStore.
    w_queue_.pop_front();
    out_->actions.push_back(Action::Compute(Op::kBackwardWeight, stage(c), mb, direction(c)));
  }

  const Schedule& s_;
  const bool v_;
  const int rank_;
  const bool with_comm_;
  RankProgram* out_;
  bool first_rank_, last_rank_, middle_;
  int half_ranks_, half_rank_, chunk_xor_, chunks_per_direction_;
  int f_[2] = {0, 0}, b_[2] = {0, 0};
  int recv_f_[2] = {0, 0}, send_f_[2] = {0, 0};
  int recv_b_[2] = {0, 0}, send_b_[2] = {0, 0};
  std::deque<std::pair<int, int>> w_queue_;
  bool queued_ = false;  // the open batch has actions
};

}  // namespace

bool DualPipeParametersValid(Kind kind, int ranks, int microbatches) {
  if (ranks < 1 || microbatches < 2 * ranks) return false;
  if (kind == Kind::kDualPipeV) return true;
  return kind == Kind::kDualPipe && ranks % 2 == 0 && microbatches % 2 == 0;
}

Schedule TraceDualPipe(Kind kind, int ranks, int microbatches, bool with_comm) {
  const bool v = kind == Kind::kDualPipeV;
  Schedule s = *MakeShell(kind, ranks, microbatches, 2);
  s.lowered = with_comm;
  // Per rank and micro-batch of a direction: at most 2 F, 2 B/I and W; with
  // comm about two sends/receives per compute op more.
  const int64_t m = microbatches / (v ? 1 : 2);
  const int64_t per_rank = (with_comm ? 14 : 5) * m + 16;
  for (int r = 0; r < ranks; ++r) {
    s.programs[r].actions.reserve(per_rank);
    if (with_comm) s.programs[r].batches.reserve(4 * m + 16);
    RankTracer(s, v, r, with_comm, &s.programs[r]).Run();
  }
  return s;
}

}  // namespace tandem::schedule
