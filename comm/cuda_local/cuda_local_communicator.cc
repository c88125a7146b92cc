#include "comm/cuda_local/cuda_local_communicator.h"

#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "comm/cuda_local/kernels.h"
#include "comm/in_order.h"
#include "comm/local/local_communicator.h"

namespace tandem::comm {
namespace {

// What a rank tells the others about one collective: its buffers, the event
// after which its input is ready, and what it called.
struct Descriptor {
  const void* send;
  void* recv;
  cudaEvent_t ready;
  int64_t op, dtype, count, extra;
};

// Waits until `event` has completed on the GPU or the deadline passes.
absl::Status AwaitEvent(cudaEvent_t event, Deadline deadline, const std::string& what) {
  while (true) {
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) return CudaStatus(e, "cudaEventQuery", __FILE__, __LINE__);
    if (deadline.expired()) {
      return absl::DeadlineExceededError(absl::StrFormat("%s: deadline %s exceeded; its GPU work has not finished",
                                                         what, absl::FormatDuration(deadline.timeout())));
    }
    absl::SleepFor(absl::Microseconds(20));
  }
}

class CudaLocalCommunicator;

// A posted operation: its first descriptor exchange is in flight on the
// `data` host communicator; `finish` runs in Wait(), in posting order.
struct Op {
  int64_t seq = 0;
  std::string name;
  std::unique_ptr<Work> exchange;
  std::shared_ptr<void> buffers;  // descriptors the exchange reads and writes
  std::function<absl::Status(Deadline)> finish;
  bool done = false;
  absl::Status status;
};

using CudaLocalWork = InOrderWork<CudaLocalCommunicator, Op>;

// Two host communicators carry small messages: `data` the descriptors posted
// with each operation, `control` the acknowledgements and completion events
// exchanged while waiting. Each rank completes its operations in posting
// order, so both see the same order of messages on every rank pair.
class CudaLocalCommunicator : public Communicator {
 public:
  CudaLocalCommunicator(std::unique_ptr<Communicator> data, std::unique_ptr<Communicator> control, int device,
                        cudaStream_t stream)
      : data_(std::move(data)), control_(std::move(control)), device_(device), stream_(stream) {}
  ~CudaLocalCommunicator() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return data_->rank(); }
  int size() const override { return data_->size(); }
  absl::string_view backend() const override { return "cuda_local"; }
  cudaStream_t stream() const { return stream_; }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) override {
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> data, data_->Split(color, key, deadline));
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> control, control_->Split(color, key, deadline));
    if (data == nullptr) return std::unique_ptr<Communicator>();
    cudaStream_t s = nullptr;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return std::unique_ptr<Communicator>(new CudaLocalCommunicator(std::move(data), std::move(control), device_, s));
  }

  // Each send's descriptor {pointer, count, dtype, ready event} goes to the
  // receiver at post time. In Wait() the receiver copies after the event and
  // acknowledges with its own event, which the sender's stream then waits on.
  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    for (const P2POp& p : ops) {
      const char* name = p.kind == P2POp::Kind::kSend ? "send" : "recv";
      TANDEM_RETURN_IF_ERROR(CheckPeer(name, p.peer, size()));
      TANDEM_RETURN_IF_ERROR(CheckCount(name, p.count, p.data));
    }
    struct Buffers {
      std::vector<P2POp> ops;
      std::vector<Descriptor> out, in;
    };
    auto b = std::make_shared<Buffers>();
    b->ops.assign(ops.begin(), ops.end());
    TANDEM_ASSIGN_OR_RETURN(cudaEvent_t ready, Record());
    std::vector<P2POp> host_ops;
    int sends = 0, recvs = 0;
    for (const P2POp& p : ops) (p.kind == P2POp::Kind::kSend ? sends : recvs)++;
    b->out.reserve(sends);
    b->in.resize(recvs);
    for (const P2POp& p : ops) {
      if (p.kind == P2POp::Kind::kSend) {
        b->out.push_back({p.data, nullptr, ready, 0, static_cast<int64_t>(p.dtype), p.count, 0});
        host_ops.push_back(P2POp::Send(p.peer, &b->out.back(), sizeof(Descriptor), DataType::kBytes));
      } else {
        host_ops.push_back(P2POp::Recv(p.peer, &b->in[host_ops.size() - b->out.size()], sizeof(Descriptor),
                                       DataType::kBytes));
      }
    }
    auto op = std::make_shared<Op>();
    op->name = absl::StrFormat("send_recv (%d sends, %d receives)", sends, recvs);
    TANDEM_ASSIGN_OR_RETURN(op->exchange, data_->SendRecv(host_ops));
    op->buffers = b;
    op->finish = [this, b](Deadline deadline) -> absl::Status {
      absl::Status s;
      size_t ri = 0;
      for (const P2POp& p : b->ops) {
        if (p.kind != P2POp::Kind::kRecv) continue;
        const Descriptor& d = b->in[ri++];
        if (d.count != p.count || d.dtype != static_cast<int64_t>(p.dtype)) {
          if (s.ok()) {
            s = absl::InvalidArgumentError(absl::StrFormat(
                "message from rank %d to rank %d: ranks disagree: sent %d %s, receive expects %d %s", p.peer,
                rank(), d.count, DataTypeName(static_cast<DataType>(d.dtype)), p.count, DataTypeName(p.dtype)));
          }
          continue;
        }
        TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, d.ready, 0));
        if (p.count > 0) {
          TANDEM_CUDA_RETURN_IF_ERROR(
              cudaMemcpyAsync(p.data, d.send, p.count * SizeOf(p.dtype), cudaMemcpyDeviceToDevice, stream_));
        }
      }
      TANDEM_ASSIGN_OR_RETURN(cudaEvent_t copied, Record());
      std::vector<Descriptor> acks_out(b->in.size(), Descriptor{nullptr, nullptr, copied, s.ok() ? 0 : 1, 0, 0, 0});
      std::vector<Descriptor> acks_in(b->out.size());
      std::vector<P2POp> host_ops;
      size_t ai = 0, bi = 0;
      for (const P2POp& p : b->ops) {
        if (p.kind == P2POp::Kind::kRecv) {
          host_ops.push_back(P2POp::Send(p.peer, &acks_out[ai++], sizeof(Descriptor), DataType::kBytes));
        } else {
          host_ops.push_back(P2POp::Recv(p.peer, &acks_in[bi++], sizeof(Descriptor), DataType::kBytes));
        }
      }
      TANDEM_RETURN_IF_ERROR(PostAndWait(control_->SendRecv(host_ops), deadline));
      for (const Descriptor& a : acks_in) {
        if (a.op != 0 && s.ok()) {
          s = absl::InvalidArgumentError(
              absl::StrFormat("send from rank %d: ranks disagree: the receiver expected another count or dtype", rank()));
        }
        TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, a.ready, 0));
      }
      return s;
    };
    return Enqueue(std::move(op));
  }

  WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("all_reduce", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, recv));
    return Collective({send, recv, nullptr, 1, static_cast<int64_t>(t), count, static_cast<int64_t>(op)}, "all_reduce",
                      [this, count, t, op](const std::vector<Descriptor>& all) -> absl::Status {
                        // My slice, reduced in rank order, written to every rank.
                        const int n = size();
                        const int64_t lo = count * rank() / n, hi = count * (rank() + 1) / n, es = SizeOf(t);
                        cuda::SliceSet slices;
                        slices.ranks = n;
                        for (int r = 0; r < n; ++r) {
                          slices.in[r] = static_cast<const char*>(all[r].send) + lo * es;
                          slices.out[r] = static_cast<char*>(all[r].recv) + lo * es;
                        }
                        TANDEM_CUDA_RETURN_IF_ERROR(cuda::EnqueueReduceToAll(slices, hi - lo, t, op, stream_));
                        return absl::OkStatus();
                      });
  }

  WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, recv));
    return Collective({send, recv, nullptr, 2, static_cast<int64_t>(t), count, 0}, "all_gather",
                      [this, recv, count, t](const std::vector<Descriptor>& all) -> absl::Status {
                        const int64_t bytes = count * SizeOf(t);
                        for (int r = 0; r < size(); ++r) {
                          char* to = static_cast<char*>(recv) + r * bytes;
                          if (bytes > 0 && to != all[r].send) {
                            TANDEM_CUDA_RETURN_IF_ERROR(
                                cudaMemcpyAsync(to, all[r].send, bytes, cudaMemcpyDeviceToDevice, stream_));
                          }
                        }
                        return absl::OkStatus();
                      });
  }

  WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("reduce_scatter", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, recv));
    return Collective({send, recv, nullptr, 3, static_cast<int64_t>(t), count, static_cast<int64_t>(op)},
                      "reduce_scatter", [this, recv, count, t, op](const std::vector<Descriptor>& all) -> absl::Status {
                        // My block of every rank's input, reduced into my output only.
                        cuda::SliceSet slices;
                        slices.ranks = size();
                        for (int r = 0; r < size(); ++r) {
                          slices.in[r] = static_cast<const char*>(all[r].send) + rank() * count * SizeOf(t);
                          slices.out[r] = recv;
                        }
                        TANDEM_CUDA_RETURN_IF_ERROR(cuda::EnqueueReduceToAll(slices, count, t, op, stream_));
                        return absl::OkStatus();
                      });
  }

  WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) override {
    TANDEM_RETURN_IF_ERROR(CheckPeer("broadcast root", root, size()));
    TANDEM_RETURN_IF_ERROR(CheckCount("broadcast", count, buffer));
    return Collective({buffer, buffer, nullptr, 4, static_cast<int64_t>(t), count, root}, "broadcast",
                      [this, buffer, count, t, root](const std::vector<Descriptor>& all) -> absl::Status {
                        if (rank() != root && count > 0) {
                          TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buffer, all[root].send, count * SizeOf(t),
                                                                      cudaMemcpyDeviceToDevice, stream_));
                        }
                        return absl::OkStatus();
                      });
  }

  WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, recv));
    if (count > 0 && send == recv && size() > 1) {
      return absl::InvalidArgumentError("all_to_all: in-place (send == recv) is not supported");
    }
    return Collective({send, recv, nullptr, 5, static_cast<int64_t>(t), count, 0}, "all_to_all",
                      [this, recv, count, t](const std::vector<Descriptor>& all) -> absl::Status {
                        const int64_t bytes = count * SizeOf(t);
                        for (int r = 0; r < size() && bytes > 0; ++r) {
                          TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
                              static_cast<char*>(recv) + r * bytes,
                              static_cast<const char*>(all[r].send) + rank() * bytes, bytes,
                              cudaMemcpyDeviceToDevice, stream_));
                        }
                        return absl::OkStatus();
                      });
  }

  // The send counts travel in the descriptor exchange (one AllGather of a
  // descriptor plus this rank's counts).
  WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                   absl::Span<const int64_t> recv_counts, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckAllToAllV(send, send_counts, recv, recv_counts, size()));
    std::vector<int64_t> sc(send_counts.begin(), send_counts.end()), rc(recv_counts.begin(), recv_counts.end());
    return Collective({send, recv, nullptr, 6, static_cast<int64_t>(t), 0, 0}, "all_to_all_v",
                      [this, recv, rc, t](const std::vector<Descriptor>& all,
                                          const std::vector<int64_t>& counts) -> absl::Status {
                        const int n = size();
                        for (int p = 0; p < n; ++p) {
                          if (counts[int64_t{p} * n + rank()] != rc[p]) {
                            return absl::InvalidArgumentError(absl::StrFormat(
                                "all_to_all_v: ranks disagree: rank %d sends %d elements to rank %d, which expects %d",
                                p, counts[int64_t{p} * n + rank()], rank(), rc[p]));
                          }
                        }
                        const int64_t es = SizeOf(t);
                        int64_t at = 0;
                        for (int r = 0; r < n; ++r) {
                          int64_t offset = 0;
                          for (int q = 0; q < rank(); ++q) offset += counts[int64_t{r} * n + q];
                          if (rc[r] > 0) {
                            TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
                                static_cast<char*>(recv) + at * es, static_cast<const char*>(all[r].send) + offset * es,
                                rc[r] * es, cudaMemcpyDeviceToDevice, stream_));
                          }
                          at += rc[r];
                        }
                        return absl::OkStatus();
                      },
                      sc);
  }

  WorkOr Barrier() override {
    return Collective({nullptr, nullptr, nullptr, 7, 0, 0, 0}, "barrier",
                      [](const std::vector<Descriptor>&) { return absl::OkStatus(); });
  }

  absl::Status Progress(Op* target, Deadline deadline) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    while (!target->done) {
      std::shared_ptr<Op> op = pending_.front();
      absl::Status s = op->exchange->Wait(deadline);
      if (absl::IsDeadlineExceeded(s)) return s;  // still pending; names the missing ranks
      if (s.ok()) s = op->finish(deadline);
      if (absl::IsDeadlineExceeded(s)) return s;
      absl::StatusOr<cudaEvent_t> end = Record();
      if (s.ok() && !end.ok()) s = end.status();
      if (s.ok()) s = AwaitEvent(*end, deadline, op->name);
      if (absl::IsDeadlineExceeded(s)) return s;
      op->status = s;
      op->done = true;
      pending_.pop_front();
      Retire();
    }
    return target->status;
  }

 private:
  // Creates an event and records it on this rank's stream; owned by events_.
  absl::StatusOr<cudaEvent_t> Record() {
    cudaEvent_t e;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    TANDEM_CUDA_RETURN_IF_ERROR(cudaEventRecord(e, stream_));
    events_.push_back(e);
    return e;
  }

  // Peers enqueue waits on this rank's events within the operation that
  // published them; every later operation completes only after all ranks
  // finished that one, so events older than the last few operations are no
  // longer referenced.
  void Retire() {
    constexpr size_t kKeep = 256;
    while (events_.size() > kKeep) {
      cudaEventDestroy(events_.front());
      events_.pop_front();
    }
  }

  WorkOr Enqueue(std::shared_ptr<Op> op) {
    op->seq = next_seq_++;
    pending_.push_back(op);
    return std::unique_ptr<Work>(new CudaLocalWork(this, op));
  }

  // The protocol of every collective: post my descriptor (with the event
  // after which my input is ready) in a host all-gather; in Wait, check
  // agreement, wait for everyone's input, run my part on my stream, then
  // all-gather completion events on the control communicator and wait for
  // them, so nobody reuses buffers that others still read.
  template <typename Fn>
  WorkOr Collective(Descriptor mine, absl::string_view name, Fn part, std::vector<int64_t> counts = {}) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    const int n = size();
    TANDEM_ASSIGN_OR_RETURN(mine.ready, Record());
    // One message per rank: my descriptor, then my counts (all_to_all_v).
    struct Buffers {
      std::vector<char> mine, all;
      std::vector<Descriptor> desc;
      std::vector<int64_t> all_counts;
    };
    auto b = std::make_shared<Buffers>();
    const int64_t bytes = sizeof(Descriptor) + 8 * static_cast<int64_t>(counts.size());
    b->mine.resize(bytes);
    std::memcpy(b->mine.data(), &mine, sizeof(Descriptor));
    if (!counts.empty()) std::memcpy(b->mine.data() + sizeof(Descriptor), counts.data(), 8 * counts.size());
    b->all.resize(bytes * n);
    auto op = std::make_shared<Op>();
    op->name = absl::StrFormat("%s %s x%d", name, DataTypeName(static_cast<DataType>(mine.dtype)), mine.count);
    TANDEM_ASSIGN_OR_RETURN(op->exchange, data_->AllGather(b->mine.data(), b->all.data(), bytes, DataType::kBytes));
    const int64_t ncounts = static_cast<int64_t>(counts.size());
    op->buffers = b;
    op->finish = [this, b, part, n, bytes, ncounts](Deadline deadline) -> absl::Status {
      absl::Status s;
      b->desc.resize(n);
      b->all_counts.resize(ncounts * n);
      for (int r = 0; r < n; ++r) {
        std::memcpy(&b->desc[r], b->all.data() + r * bytes, sizeof(Descriptor));
        if (ncounts > 0) {
          std::memcpy(&b->all_counts[r * ncounts], b->all.data() + r * bytes + sizeof(Descriptor), 8 * ncounts);
        }
      }
      const std::vector<Descriptor>& all = b->desc;
      for (int r = 1; r < n && s.ok(); ++r) {
        if (all[r].op != all[0].op || all[r].dtype != all[0].dtype || all[r].count != all[0].count ||
            all[r].extra != all[0].extra) {
          s = absl::InvalidArgumentError(absl::StrFormat(
              "ranks disagree: rank 0 called op %d %s x%d, rank %d called op %d %s x%d", all[0].op,
              DataTypeName(static_cast<DataType>(all[0].dtype)), all[0].count, r, all[r].op,
              DataTypeName(static_cast<DataType>(all[r].dtype)), all[r].count));
        }
      }
      if (s.ok()) {
        for (int r = 0; r < n; ++r) TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, all[r].ready, 0));
        if constexpr (std::is_invocable_v<Fn, const std::vector<Descriptor>&, const std::vector<int64_t>&>) {
          s = part(all, b->all_counts);
        } else {
          s = part(all);
        }
      }
      TANDEM_ASSIGN_OR_RETURN(cudaEvent_t done, Record());
      std::vector<cudaEvent_t> dones(n);
      TANDEM_RETURN_IF_ERROR(PostAndWait(
          control_->AllGather(&done, dones.data(), sizeof(cudaEvent_t), DataType::kBytes), deadline));
      for (int r = 0; r < n; ++r) TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, dones[r], 0));
      return s;
    };
    return Enqueue(std::move(op));
  }

  static constexpr absl::Duration kHostTimeout = absl::Minutes(5);

  std::unique_ptr<Communicator> data_, control_;
  const int device_;
  cudaStream_t stream_;
  int64_t next_seq_ = 0;
  std::deque<std::shared_ptr<Op>> pending_;
  std::deque<cudaEvent_t> events_;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateCudaLocalGroup(int size, int device) {
  if (VisibleGpuCount() == 0) return absl::UnavailableError("cuda_local: no GPU visible");
  if (size < 1 || size > cuda::kMaxRanks) {
    return absl::InvalidArgumentError(absl::StrFormat("cuda_local: size: expected 1..%d, got %d", cuda::kMaxRanks, size));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  std::vector<std::unique_ptr<Communicator>> data = CreateLocalGroup(size), control = CreateLocalGroup(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) {
    cudaStream_t s = nullptr;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    out.push_back(std::make_unique<CudaLocalCommunicator>(std::move(data[r]), std::move(control[r]), device, s));
  }
  return out;
}

cudaStream_t CudaLocalStream(Communicator& comm) {
  auto* c = dynamic_cast<CudaLocalCommunicator*>(&comm);
  return c == nullptr ? nullptr : c->stream();
}

}  // namespace tandem::comm
