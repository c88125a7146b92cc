#include "schedule/executor/executor.h"

#include <chrono>
#include <map>
#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "schedule/simulator/render.h"

namespace tandem::schedule {

void MemoryAbortBoard::Post(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (!why_) why_ = why;
}

std::optional<std::string> MemoryAbortBoard::Check() {
  absl::MutexLock lock(&mu_);
  return why_;
}

void StoreAbortBoard::Post(const std::string& why) {
  if (store_->Add(key_ + "/count", 1).value_or(0) == 1) store_->Set(key_, why).IgnoreError();
}

std::optional<std::string> StoreAbortBoard::Check() {
  absl::StatusOr<bool> there = store_->Check(key_);
  if (!there.ok() || !*there) return std::nullopt;
  absl::StatusOr<std::string> why = store_->Get(key_, Deadline::In(absl::Seconds(5)));
  if (!why.ok()) return std::nullopt;
  return *why;
}

namespace {

using Clock = std::chrono::steady_clock;

// Tensors waiting on this rank, keyed by what they are.
enum class Kind { kActIn, kActOut, kGradIn, kGradOut };
using Key = std::tuple<Kind, int, int, int>;  // kind, stage, direction, mb

class RankRunner {
 public:
  RankRunner(const Schedule& s, int rank, StageWork& work, comm::Communicator& comm, const ExecutorOptions& o)
      : s_(s), rank_(rank), work_(work), comm_(comm), o_(o), p_(s.programs[rank]) {}

  absl::StatusOr<RankRun> Run() {
    start_ = Clock::now();
    run_.start = start_;
    run_.rank = rank_;
    run_.timeline.assign(p_.actions.size(), {});
    pending_.resize(p_.batches.size());
    // Waits by position.
    waits_.assign(p_.actions.size() + 1, {});
    for (int b = 0; b < static_cast<int>(p_.batches.size()); ++b) waits_[p_.batches[b].wait_before].push_back(b);
    const int n = static_cast<int>(p_.actions.size());
    for (int i = 0; i <= n;) {
      for (int b : waits_[i]) TANDEM_RETURN_IF_ERROR(WaitBatch(b, i));
      if (i == n) break;
      const Action& a = p_.actions[i];
      if (IsComm(a.op)) {
        int end = i;
        while (end < n && IsComm(p_.actions[end].op) && p_.actions[end].batch == a.batch) ++end;
        TANDEM_RETURN_IF_ERROR(PostBatch(a.batch, i, end));
        i = end;
        continue;
      }
      const auto t0 = Clock::now();
      absl::Status st = Compute(a);
      const auto t1 = Clock::now();
      run_.timeline[i] = {Us(t0), Us(t1)};
      run_.compute_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
      if (!st.ok()) {
        const std::string why =
            absl::StrFormat("rank %d position %d (%s): %s", rank_, i, DescribeAction(s_, a), st.message());
        if (o_.abort != nullptr) o_.abort->Post(why);
        return absl::Status(st.code(), why);
      }
      ++i;
    }
    run_.step_us = Us(Clock::now());
    for (const comm::ExchangeSpan& e : work_.Exchanges()) {
      if (e.posted >= start_) run_.exchanges.push_back({Us(e.posted), Us(e.done), e.what});
    }
    return run_;
  }

 private:
  struct Pending {
    std::unique_ptr<comm::Work> work;
    std::vector<std::pair<Key, Buffer>> recvs;  // where each receive lands
    std::vector<Buffer> sends;                  // kept alive until complete
    std::vector<int> positions;
    bool posted = false;
  };

  double Us(Clock::time_point t) const { return std::chrono::duration<double, std::micro>(t - start_).count(); }
  bool Gradient(Op op) const { return op == Op::kSendB || op == Op::kRecvB; }

  absl::StatusOr<Buffer> Take(const Key& k, const Action& a) {
    auto it = held_.find(k);
    if (it == held_.end()) {
      return absl::InternalError(
          absl::StrFormat("input of %s is missing (not received or produced)", DescribeAction(s_, a)));
    }
    Buffer b = std::move(it->second);
    held_.erase(it);
    return b;
  }

  // Where a produced tensor goes: the next stage on this rank, or the send.
  void KeepOutput(int stage, int dir, int mb, Buffer out) {
    if (stage + 1 >= s_.stages) return;
    if (s_.RankOf(dir, stage + 1) == rank_) {
      held_[{Kind::kActIn, stage + 1, dir, mb}] = std::move(out);
    } else {
      held_[{Kind::kActOut, stage, dir, mb}] = std::move(out);
    }
  }
  void KeepInputGrad(int stage, int dir, int mb, Buffer grad) {
    if (stage == 0) return;
    if (s_.RankOf(dir, stage - 1) == rank_) {
      held_[{Kind::kGradIn, stage - 1, dir, mb}] = std::move(grad);
    } else {
      held_[{Kind::kGradOut, stage, dir, mb}] = std::move(grad);
    }
  }

  absl::StatusOr<Buffer> Input(const Slot& f, const Action& a) {
    if (f.stage == 0) return Buffer();
    return Take({Kind::kActIn, f.stage, f.direction, f.mb}, a);
  }
  absl::StatusOr<Buffer> OutputGrad(const Slot& b, const Action& a) {
    if (b.stage == s_.stages - 1) return Buffer();
    return Take({Kind::kGradIn, b.stage, b.direction, b.mb}, a);
  }

  absl::Status Compute(const Action& a) {
    const Slot f{a.stage, a.direction, a.mb};
    switch (a.op) {
      case Op::kForward: {
        TANDEM_ASSIGN_OR_RETURN(Buffer in, Input(f, a));
        TANDEM_ASSIGN_OR_RETURN(Buffer out, work_.Forward(f, std::move(in)));
        KeepOutput(f.stage, f.direction, f.mb, std::move(out));
        return absl::OkStatus();
      }
      case Op::kBackward:
      case Op::kBackwardInput: {
        if (o_.forward_only) return absl::OkStatus();
        TANDEM_ASSIGN_OR_RETURN(Buffer grad, OutputGrad(f, a));
        absl::StatusOr<Buffer> in_grad =
            a.op == Op::kBackward ? work_.Backward(f, std::move(grad)) : work_.BackwardInput(f, std::move(grad));
        TANDEM_RETURN_IF_ERROR(in_grad.status());
        KeepInputGrad(f.stage, f.direction, f.mb, *std::move(in_grad));
        return absl::OkStatus();
      }
      case Op::kBackwardWeight:
        return o_.forward_only ? absl::OkStatus() : work_.BackwardWeight(f);
      case Op::kForwardBackward: {
        const Slot b{a.stage_b, a.direction_b, a.mb_b};
        TANDEM_ASSIGN_OR_RETURN(Buffer in, Input(f, a));
        if (o_.forward_only) {
          TANDEM_ASSIGN_OR_RETURN(Buffer out, work_.Forward(f, std::move(in)));
          KeepOutput(f.stage, f.direction, f.mb, std::move(out));
          return absl::OkStatus();
        }
        TANDEM_ASSIGN_OR_RETURN(Buffer grad, OutputGrad(b, a));
        TANDEM_ASSIGN_OR_RETURN(auto both, work_.ForwardBackward(f, std::move(in), b, std::move(grad)));
        KeepOutput(f.stage, f.direction, f.mb, std::move(both.first));
        KeepInputGrad(b.stage, b.direction, b.mb, std::move(both.second));
        return absl::OkStatus();
      }
      default:
        return absl::InternalError("not a compute action");
    }
  }

  absl::Status PostBatch(int batch, int begin, int end) {
    Pending& p = pending_[batch];
    std::vector<comm::P2POp> ops;
    for (int i = begin; i < end; ++i) {
      const Action& a = p_.actions[i];
      if (o_.forward_only && Gradient(a.op)) continue;
      p.positions.push_back(i);
      if (a.op == Op::kSendF || a.op == Op::kSendB) {
        const Key k{a.op == Op::kSendF ? Kind::kActOut : Kind::kGradOut, a.stage, a.direction, a.mb};
        TANDEM_ASSIGN_OR_RETURN(Buffer b, Take(k, a));
        p.sends.push_back(std::move(b));
      } else {
        // A forward receive brings the input of a.stage; a backward receive
        // the gradient of its output, sized as the boundary after it.
        const int boundary = a.op == Op::kRecvF ? a.stage : a.stage + 1;
        const int64_t n = work_.BoundaryElements({boundary, a.direction, a.mb});
        const Key k{a.op == Op::kRecvF ? Kind::kActIn : Kind::kGradIn, a.stage, a.direction, a.mb};
        absl::StatusOr<Buffer> b = work_.NewBuffer(n);
        if (!b.ok()) return Fail(i, b.status());
        p.recvs.emplace_back(k, *std::move(b));
      }
    }
    size_t si = 0, ri = 0;
    for (int i : p.positions) {
      const Action& a = p_.actions[i];
      if (IsSend(a.op)) {
        const Buffer& b = p.sends[si++];
        ops.push_back(comm::P2POp::Send(a.peer, b.data(), b.size(), comm::DataType::kF32));
      } else {
        const Buffer& b = p.recvs[ri++].second;
        ops.push_back(comm::P2POp::Recv(a.peer, b.data(), b.size(), comm::DataType::kF32));
      }
    }
    const double now = Us(Clock::now());
    for (int i = begin; i < end; ++i) run_.timeline[i].start = now;
    if (ops.empty()) return absl::OkStatus();
    comm::WorkOr w = comm_.SendRecv(ops);
    if (!w.ok()) return Fail(begin, w.status());
    p.work = *std::move(w);
    p.posted = true;
    return absl::OkStatus();
  }

  absl::Status Fail(int position, const absl::Status& st) {
    const std::string why = absl::StrFormat("rank %d position %d (%s): %s", rank_, position,
                                            DescribeAction(s_, p_.actions[position]), st.message());
    if (o_.abort != nullptr && !absl::IsAborted(st)) o_.abort->Post(why);
    return absl::Status(st.code(), why);
  }

  // Waits in short slices, checking the abort board between them.
  absl::Status WaitBatch(int batch, int position) {
    Pending& p = pending_[batch];
    if (!p.posted) return absl::OkStatus();
    const auto t0 = Clock::now();
    const Deadline deadline = Deadline::In(o_.timeout);
    while (true) {
      absl::Status st = p.work->Wait(deadline.Slice(absl::Milliseconds(50)));
      if (st.ok()) break;
      if (!absl::IsDeadlineExceeded(st)) return Fail(p.positions.front(), st);
      if (o_.abort != nullptr) {
        if (std::optional<std::string> why = o_.abort->Check()) {
          return absl::AbortedError(absl::StrFormat("rank %d stopped before position %d: %s", rank_, position, *why));
        }
      }
      if (deadline.expired()) return Fail(p.positions.front(), st);  // names the whole wait
    }
    const auto t1 = Clock::now();
    run_.wait_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
    for (int i : p.positions) run_.timeline[i].end = Us(t1);
    for (auto& [key, buffer] : p.recvs) held_[key] = std::move(buffer);
    p = Pending();  // frees the sent buffers
    return absl::OkStatus();
  }

  const Schedule& s_;
  const int rank_;
  StageWork& work_;
  comm::Communicator& comm_;
  const ExecutorOptions& o_;
  const RankProgram& p_;
  Clock::time_point start_;
  RankRun run_;
  std::vector<Pending> pending_;
  std::vector<std::vector<int>> waits_;
  std::map<Key, Buffer> held_;
};

}  // namespace

absl::StatusOr<RankRun> RunRank(const Schedule& s, int rank, StageWork& work, comm::Communicator& comm,
                                const ExecutorOptions& options) {
  if (!s.lowered) return absl::FailedPreconditionError("executor: schedule is not lowered (lower it first)");
  if (rank < 0 || rank >= s.ranks || comm.size() != s.ranks || comm.rank() != rank) {
    return absl::InvalidArgumentError(
        absl::StrFormat("executor: rank %d of a %d-rank schedule on communicator rank %d of %d", rank, s.ranks,
                        comm.rank(), comm.size()));
  }
  return RankRunner(s, rank, work, comm, options).Run();
}

absl::StatusOr<std::string> ExecutorChromeTrace(const Schedule& s, const std::vector<RankRun>& runs) {
  SimResult as_sim;
  as_sim.timeline.resize(s.ranks);
  auto first = std::chrono::steady_clock::time_point::max();
  for (const RankRun& r : runs) first = std::min(first, r.start);
  for (const RankRun& r : runs) {
    const double offset = std::chrono::duration<double, std::micro>(r.start - first).count();
    std::vector<Interval>& t = as_sim.timeline[r.rank];
    t = r.timeline;
    // To ms from the first start: RenderChromeTrace's unit.
    for (Interval& i : t) i = {(i.start + offset) / 1000.0, (i.end + offset) / 1000.0};
    as_sim.exchanges.resize(s.ranks);
    for (const RankRun::Exchange& e : r.exchanges) {
      as_sim.exchanges[r.rank].push_back({0, (e.start + offset) / 1000.0, (e.end + offset) / 1000.0, e.what});
    }
  }
  return RenderChromeTrace(s, as_sim, /*unit_us=*/1000.0);
}

}  // namespace tandem::schedule
