#include "comm/cuda_local/cuda_local_communicator.h"

#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "comm/cuda_local/reduce_kernel.h"
#include "comm/in_order.h"
#include "comm/local/local_communicator.h"

namespace tandem::comm {
namespace {

// An event one virtual rank records and `holders` ranks wait on (itself
// too where it waits). Each holder releases it once its wait is enqueued,
// or without waiting on an error; the last one destroys it (CUDA allows
// destroying an event whose waits are enqueued). No rank can destroy an
// event another rank has yet to wait on, however late that rank is.
struct SharedEvent {
  cudaEvent_t event = nullptr;
  std::atomic<int> holders{0};
  void Release() {
    if (holders.fetch_sub(1) == 1) {
      cudaEventDestroy(event);
      delete this;
    }
  }
};

// What a rank tells the others about one collective: its buffers, the event
// after which its input is ready, and what it called.
struct Descriptor {
  const void* send;
  void* recv;
  SharedEvent* ready;
  int64_t op, dtype, count, extra;
};

// Names of Descriptor::op, as the other backends name the operations.
constexpr const char* kOpNames[] = {"send_recv", "all_reduce", "all_gather",   "reduce_scatter",
                                    "broadcast", "all_to_all", "all_to_all_v", "barrier"};

// Kernels and copies of this backend read and write device memory; a host
// pointer would fault on the GPU and poison the whole context.
absl::Status CheckDeviceMemory(absl::string_view op, const void* p, int64_t count) {
  if (p == nullptr || count == 0) return absl::OkStatus();  // CheckCount rejects null with a count
  cudaPointerAttributes a;
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error
    return absl::InvalidArgumentError(absl::StrFormat("%s: buffer %p: %s", op, p, cudaGetErrorString(e)));
  }
  if (a.type == cudaMemoryTypeUnregistered) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: buffer %p is host memory; cuda_local moves device memory (cudaMalloc)", op, p));
  }
  return absl::OkStatus();
}

// Waits until `event` has completed on the GPU or the deadline passes.
absl::Status AwaitEvent(cudaEvent_t event, Deadline deadline) {
  const absl::Time start = absl::Now();
  while (true) {
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) return CudaStatus(e, "cudaEventQuery", __FILE__, __LINE__);
    if (deadline.expired()) {
      return absl::DeadlineExceededError(absl::StrFormat("deadline %s exceeded; its GPU work has not finished",
                                                         absl::FormatDuration(deadline.timeout())));
    }
    // Yield while the work is likely short; sleep once it is not.
    if (absl::Now() - start < absl::Microseconds(500)) {
      std::this_thread::yield();
    } else {
      absl::SleepFor(absl::Microseconds(20));
    }
  }
}

class CudaLocalCommunicator;

// A posted operation moves through three stages:
//   kExchange  its descriptors are in flight on the `data` host communicator;
//   kControl   `start` ran once they arrived: it enqueued this rank's GPU
//              work and posted the `control` exchange (acknowledgements or
//              completion events), which `end` consumes once it completes;
//   kGpu       waiting for this rank's stream to pass the operation.
// Every stage resumes where it stopped when a wait runs out of time, and
// all buffers the host exchanges read or write live in `buffers`.
struct Op {
  enum Stage { kExchange, kControl, kGpu };
  std::string name;
  Stage stage = kExchange;
  std::unique_ptr<Work> exchange, control;
  std::shared_ptr<void> buffers;
  std::function<absl::StatusOr<std::unique_ptr<Work>>()> start;
  std::function<absl::Status()> end;
  bool done = false;
  absl::Status status;
};

using CudaLocalWork = InOrderWork<CudaLocalCommunicator, Op>;

// Two host communicators carry small messages: `data` the descriptors posted
// with each operation, `control` the acknowledgements and completion events.
// Each rank starts its operations in posting order, so both see the same
// order of messages on every rank pair. Like NCCL, which enqueues a batch's
// GPU work when it is posted, a rank starts every operation whose
// descriptors have arrived whenever it waits for any of them: an operation
// never waits for a peer that is itself waiting for a later operation.
class CudaLocalCommunicator : public Communicator {
 public:
  CudaLocalCommunicator(std::unique_ptr<Communicator> data, std::unique_ptr<Communicator> control, int device,
                        cudaStream_t stream)
      : data_(std::move(data)), control_(std::move(control)), device_(device), stream_(stream) {}
  ~CudaLocalCommunicator() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
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
  // receiver at post time. Once it arrives the receiver copies after the event and
  // acknowledges with its own event, which the sender's stream then waits on.
  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    for (const P2POp& p : ops) {
      const char* name = p.kind == P2POp::Kind::kSend ? "send" : "recv";
      TANDEM_RETURN_IF_ERROR(CheckPeer(name, p.peer, size()));
      TANDEM_RETURN_IF_ERROR(CheckCount(name, p.count, p.data));
      TANDEM_RETURN_IF_ERROR(CheckDeviceMemory(name, p.data, p.count));
    }
    struct Buffers {
      std::vector<P2POp> ops;
      std::vector<Descriptor> out, in;  // descriptors sent and received
      std::vector<Descriptor> acks_out, acks_in;
      absl::Status status;  // a disagreement found by start
    };
    auto b = std::make_shared<Buffers>();
    b->ops.assign(ops.begin(), ops.end());
    std::vector<P2POp> host_ops;
    int sends = 0, recvs = 0;
    for (const P2POp& p : ops) (p.kind == P2POp::Kind::kSend ? sends : recvs)++;
    TANDEM_ASSIGN_OR_RETURN(SharedEvent * ready, Record(/*holders=*/sends));
    b->out.reserve(sends);
    b->in.resize(recvs);
    for (const P2POp& p : ops) {
      if (p.kind == P2POp::Kind::kSend) {
        b->out.push_back({p.data, nullptr, ready, 0, static_cast<int64_t>(p.dtype), p.count, 0});
        host_ops.push_back(P2POp::Send(p.peer, &b->out.back(), sizeof(Descriptor), DataType::kBytes));
      } else {
        host_ops.push_back(
            P2POp::Recv(p.peer, &b->in[host_ops.size() - b->out.size()], sizeof(Descriptor), DataType::kBytes));
      }
    }
    auto op = std::make_shared<Op>();
    op->name = absl::StrFormat("send_recv (%d sends, %d receives)", sends, recvs);
    TANDEM_ASSIGN_OR_RETURN(op->exchange, data_->SendRecv(host_ops));
    op->buffers = b;
    // Copy what arrived (after the sender's input is ready), then tell each
    // sender, with an event after the copies and what the receive expected,
    // so it reports a mismatch in the same words as the receiver.
    op->start = [this, b]() -> absl::StatusOr<std::unique_ptr<Work>> {
      size_t ri = 0;
      for (const P2POp& p : b->ops) {
        if (p.kind != P2POp::Kind::kRecv) continue;
        const Descriptor& d = b->in[ri++];
        if (d.count != p.count || d.dtype != static_cast<int64_t>(p.dtype)) {
          if (b->status.ok()) {
            b->status = absl::InvalidArgumentError(absl::StrFormat(
                "message from rank %d to rank %d: ranks disagree: sent %d %s, receive expects %d %s", p.peer, rank(),
                d.count, DataTypeName(static_cast<DataType>(d.dtype)), p.count, DataTypeName(p.dtype)));
          }
          d.ready->Release();
          continue;
        }
        TANDEM_RETURN_IF_ERROR(WaitAndRelease(d.ready));
        if (p.count > 0) {
          TANDEM_CUDA_RETURN_IF_ERROR(
              cudaMemcpyAsync(p.data, d.send, p.count * SizeOf(p.dtype), cudaMemcpyDeviceToDevice, stream_));
        }
      }
      TANDEM_ASSIGN_OR_RETURN(SharedEvent * copied, Record(/*holders=*/static_cast<int>(b->in.size())));
      b->acks_out.reserve(b->in.size());
      b->acks_in.resize(b->out.size());
      std::vector<P2POp> acks;
      size_t bi = 0;
      for (const P2POp& p : b->ops) {
        if (p.kind == P2POp::Kind::kRecv) {
          b->acks_out.push_back({nullptr, nullptr, copied, 0, static_cast<int64_t>(p.dtype), p.count, 0});
          acks.push_back(P2POp::Send(p.peer, &b->acks_out.back(), sizeof(Descriptor), DataType::kBytes));
        } else {
          acks.push_back(P2POp::Recv(p.peer, &b->acks_in[bi++], sizeof(Descriptor), DataType::kBytes));
        }
      }
      return control_->SendRecv(acks);
    };
    op->end = [this, b]() -> absl::Status {
      size_t bi = 0;
      for (const P2POp& p : b->ops) {
        if (p.kind != P2POp::Kind::kSend) continue;
        const Descriptor& a = b->acks_in[bi++];
        if ((a.count != p.count || a.dtype != static_cast<int64_t>(p.dtype)) && b->status.ok()) {
          b->status = absl::InvalidArgumentError(absl::StrFormat(
              "message from rank %d to rank %d: ranks disagree: sent %d %s, receive expects %d %s", rank(), p.peer,
              p.count, DataTypeName(p.dtype), a.count, DataTypeName(static_cast<DataType>(a.dtype))));
        }
        TANDEM_RETURN_IF_ERROR(WaitAndRelease(a.ready));
      }
      return b->status;
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
    return Collective(
        {send, recv, nullptr, 2, static_cast<int64_t>(t), count, 0}, "all_gather",
        [this, recv, count, t](const std::vector<Descriptor>& all) -> absl::Status {
          const int64_t bytes = count * SizeOf(t);
          for (int r = 0; r < size(); ++r) {
            char* to = static_cast<char*>(recv) + r * bytes;
            if (bytes > 0 && to != all[r].send) {
              TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to, all[r].send, bytes, cudaMemcpyDeviceToDevice, stream_));
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
    return Collective(
        {send, recv, nullptr, 5, static_cast<int64_t>(t), count, 0}, "all_to_all",
        [this, recv, count, t](const std::vector<Descriptor>& all) -> absl::Status {
          const int64_t bytes = count * SizeOf(t);
          for (int r = 0; r < size() && bytes > 0; ++r) {
            TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<char*>(recv) + r * bytes,
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
    return Collective(
        {send, recv, nullptr, 6, static_cast<int64_t>(t), 0, 0}, "all_to_all_v",
        [this, recv, rc, t](const std::vector<Descriptor>& all, const std::vector<int64_t>& counts) -> absl::Status {
          const int n = size();
          for (int p = 0; p < n; ++p) {
            if (counts[int64_t{p} * n + rank()] != rc[p]) {
              return absl::InvalidArgumentError(absl::StrFormat(
                  "all_to_all_v: ranks disagree: rank %d sends %d elements to rank %d, which expects %d", p,
                  counts[int64_t{p} * n + rank()], rank(), rc[p]));
            }
          }
          const int64_t es = SizeOf(t);
          int64_t at = 0;
          for (int r = 0; r < n; ++r) {
            int64_t offset = 0;
            for (int q = 0; q < rank(); ++q) offset += counts[int64_t{r} * n + q];
            if (rc[r] > 0) {
              TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<char*>(recv) + at * es,
                                                          static_cast<const char*>(all[r].send) + offset * es,
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
      StartArrived();
      Op* op = pending_.front().get();
      const auto named = [&](const absl::Status& s) {
        return absl::Status(s.code(), absl::StrFormat("%s on cuda_local rank %d: %s", op->name, rank(), s.message()));
      };
      const auto expired = [&](const absl::Status& s) {
        return named(absl::DeadlineExceededError(
            absl::StrFormat("deadline %s exceeded: %s", absl::FormatDuration(deadline.timeout()), s.message())));
      };
      // Short slices, so that operations whose descriptors arrive meanwhile
      // start; the caller's deadline bounds the whole wait.
      const Deadline slice = Deadline::In(std::min(absl::Milliseconds(1), deadline.Remaining()));
      if (op->stage == Op::kExchange) {
        const absl::Status s = op->exchange->Wait(slice);
        if (s.ok() || (absl::IsDeadlineExceeded(s) && !deadline.expired())) continue;  // StartArrived() starts it
        if (absl::IsDeadlineExceeded(s)) return expired(s);  // names the ranks that have not posted
        op->status = named(s);                               // the exchange failed: nothing was started
        op->stage = Op::kGpu;
      }
      if (op->stage == Op::kControl) {
        absl::Status s = op->control->Wait(slice);
        if (absl::IsDeadlineExceeded(s)) {
          if (deadline.expired()) return expired(s);
          continue;
        }
        if (s.ok()) s = op->end();
        op->status = s.ok() ? s : named(s);
        op->stage = Op::kGpu;
      }
      if (op->status.ok()) {
        TANDEM_ASSIGN_OR_RETURN(SharedEvent * gpu_done, Record(/*holders=*/1));
        const absl::Status s = AwaitEvent(gpu_done->event, deadline);
        gpu_done->Release();
        if (absl::IsDeadlineExceeded(s)) return named(s);
        op->status = s;
      }
      op->done = true;
      pending_.pop_front();
    }
    return target->status;
  }

 private:
  // Records a new event on this rank's stream for `holders` waiters
  // (nullptr when there are none).
  absl::StatusOr<SharedEvent*> Record(int holders) {
    if (holders == 0) return nullptr;
    cudaEvent_t e;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    if (const cudaError_t err = cudaEventRecord(e, stream_); err != cudaSuccess) {
      cudaEventDestroy(e);
      return CudaStatus(err, "cudaEventRecord", __FILE__, __LINE__);
    }
    auto* shared = new SharedEvent;
    shared->event = e;
    shared->holders = holders;
    return shared;
  }

  // Makes this rank's stream wait for `e`, then releases this rank's hold.
  absl::Status WaitAndRelease(SharedEvent* e) {
    const cudaError_t err = cudaStreamWaitEvent(stream_, e->event, 0);
    e->Release();
    if (err != cudaSuccess) return CudaStatus(err, "cudaStreamWaitEvent", __FILE__, __LINE__);
    return absl::OkStatus();
  }

  // Starts, in posting order, every pending operation whose descriptors
  // have arrived (stops at the first that is still waiting for them).
  void StartArrived() {
    for (const std::shared_ptr<Op>& op : pending_) {
      if (op->stage != Op::kExchange) continue;
      if (!op->exchange->IsCompleted()) return;
      absl::Status s = op->exchange->Wait(Deadline::In(absl::ZeroDuration()));
      if (s.ok()) {
        absl::StatusOr<std::unique_ptr<Work>> control = op->start();
        if (control.ok()) {
          op->control = *std::move(control);
          op->stage = Op::kControl;
          continue;
        }
        s = control.status();
      }
      op->status =
          absl::Status(s.code(), absl::StrFormat("%s on cuda_local rank %d: %s", op->name, rank(), s.message()));
      op->stage = Op::kGpu;
    }
  }

  WorkOr Enqueue(std::shared_ptr<Op> op) {
    pending_.push_back(op);
    return std::unique_ptr<Work>(new CudaLocalWork(this, op));
  }

  // The protocol of every collective: post my descriptor (with the event
  // after which my input is ready) in a host all-gather; once all arrived,
  // check agreement, wait for everyone's input, run my part on my stream,
  // then all-gather completion events on the control communicator and wait
  // for them, so nobody reuses buffers that others still read.
  template <typename Fn>
  WorkOr Collective(Descriptor mine, absl::string_view name, Fn part, std::vector<int64_t> counts = {}) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    const int64_t elements = mine.count + std::accumulate(counts.begin(), counts.end(), int64_t{0});
    TANDEM_RETURN_IF_ERROR(CheckDeviceMemory(name, mine.send, elements));
    TANDEM_RETURN_IF_ERROR(CheckDeviceMemory(name, mine.recv, elements));
    const int n = size();
    TANDEM_ASSIGN_OR_RETURN(mine.ready, Record(/*holders=*/n));  // every rank waits for every input
    // One message per rank: my descriptor, then my counts (all_to_all_v).
    struct Buffers {
      std::vector<char> mine, all;
      std::vector<Descriptor> desc;
      std::vector<int64_t> all_counts;
      SharedEvent* done = nullptr;
      std::vector<SharedEvent*> dones;
      absl::Status status;  // a disagreement found by start
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
    op->start = [this, b, part, n, bytes, ncounts]() -> absl::StatusOr<std::unique_ptr<Work>> {
      b->desc.resize(n);
      b->all_counts.resize(ncounts * n);
      for (int r = 0; r < n; ++r) {
        std::memcpy(&b->desc[r], b->all.data() + r * bytes, sizeof(Descriptor));
        if (ncounts > 0) {
          std::memcpy(&b->all_counts[r * ncounts], b->all.data() + r * bytes + sizeof(Descriptor), 8 * ncounts);
        }
      }
      const std::vector<Descriptor>& all = b->desc;
      for (int r = 1; r < n && b->status.ok(); ++r) {
        if (all[r].op != all[0].op || all[r].dtype != all[0].dtype || all[r].count != all[0].count ||
            all[r].extra != all[0].extra) {
          b->status = absl::InvalidArgumentError(
              absl::StrFormat("ranks disagree: rank 0 called %s %s x%d, rank %d called %s %s x%d", kOpNames[all[0].op],
                              DataTypeName(static_cast<DataType>(all[0].dtype)), all[0].count, r, kOpNames[all[r].op],
                              DataTypeName(static_cast<DataType>(all[r].dtype)), all[r].count));
        }
      }
      for (int r = 0; r < n; ++r) {
        if (b->status.ok()) {
          TANDEM_RETURN_IF_ERROR(WaitAndRelease(all[r].ready));
        } else {
          all[r].ready->Release();
        }
      }
      if (b->status.ok()) {
        if constexpr (std::is_invocable_v<Fn, const std::vector<Descriptor>&, const std::vector<int64_t>&>) {
          b->status = part(all, b->all_counts);
        } else {
          b->status = part(all);
        }
      }
      TANDEM_ASSIGN_OR_RETURN(b->done, Record(/*holders=*/n));
      b->dones.resize(n);
      return control_->AllGather(&b->done, b->dones.data(), sizeof(SharedEvent*), DataType::kBytes);
    };
    op->end = [this, b]() -> absl::Status {
      for (SharedEvent* e : b->dones) TANDEM_RETURN_IF_ERROR(WaitAndRelease(e));
      return b->status;
    };
    return Enqueue(std::move(op));
  }

  static constexpr absl::Duration kHostTimeout = absl::Minutes(5);

  std::unique_ptr<Communicator> data_, control_;
  const int device_;
  cudaStream_t stream_;
  std::deque<std::shared_ptr<Op>> pending_;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateCudaLocalGroup(int size, int device) {
  if (VisibleGpuCount() == 0) return absl::UnavailableError("cuda_local: no GPU visible");
  if (size < 1 || size > cuda::kMaxRanks) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cuda_local: size: expected 1..%d, got %d", cuda::kMaxRanks, size));
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
