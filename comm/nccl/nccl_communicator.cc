#include "comm/nccl/nccl_communicator.h"

#include <nccl.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "comm/flight_recorder.h"
#include "comm/in_order.h"

namespace tandem::comm {
namespace {

absl::Status NcclStatus(ncclResult_t r, ncclComm_t comm, const char* what) {
  if (r == ncclSuccess || r == ncclInProgress) return absl::OkStatus();
  const char* last = comm != nullptr ? ncclGetLastError(comm) : "";
  const std::string msg = absl::StrFormat("%s: %s%s%s", what, ncclGetErrorString(r), *last ? ": " : "", last);
  return r == ncclInvalidArgument ? absl::InvalidArgumentError(msg) : absl::InternalError(msg);
}

#define TANDEM_NCCL_RETURN_IF_ERROR(comm, expr) TANDEM_RETURN_IF_ERROR(NcclStatus((expr), (comm), #expr))

absl::StatusOr<ncclDataType_t> NcclType(DataType t) {
  switch (t) {
    case DataType::kF32:
      return ncclFloat32;
    case DataType::kBF16:
      return ncclBfloat16;
    case DataType::kF16:
      return ncclFloat16;
    case DataType::kI32:
      return ncclInt32;
    case DataType::kI64:
      return ncclInt64;
    case DataType::kBytes:
      return ncclUint8;
  }
  return absl::InvalidArgumentError("dtype: unknown");
}

ncclRedOp_t NcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kAvg:
      return ncclAvg;
  }
  return ncclSum;
}

// Polls a non-blocking communicator until its pending call finished.
absl::Status AwaitComm(ncclComm_t comm, Deadline deadline, const std::string& what) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    TANDEM_NCCL_RETURN_IF_ERROR(comm, ncclCommGetAsyncError(comm, &state));
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) return NcclStatus(state, comm, what.c_str());
    if (deadline.expired()) return deadline.Exceeded(what);
    absl::SleepFor(absl::Microseconds(50));
  }
}

class NcclCommunicator;

struct Op {
  int64_t seq = 0;
  std::string name;             // with peers
  cudaEvent_t event = nullptr;  // recorded after the NCCL call
  bool done = false;
  absl::Status status;
};

using NcclWork = InOrderWork<NcclCommunicator, Op>;

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, Store* store, int rank, int size, NcclOptions options, cudaStream_t stream)
      : comm_(comm), store_(store), rank_(rank), size_(size), options_(std::move(options)), stream_(stream) {}
  ~NcclCommunicator() override {
    cudaSetDevice(options_.device);
    if (!aborted_) {
      cudaStreamSynchronize(stream_);
      ncclCommFinalize(comm_);
      AwaitComm(comm_, Deadline::In(absl::Seconds(30)), "finalize").IgnoreError();
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    for (auto& op : pending_) {
      if (op->event != nullptr) cudaEventDestroy(op->event);
    }
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::string_view backend() const override { return "nccl"; }
  cudaStream_t stream() const { return stream_; }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) override {
    TANDEM_RETURN_IF_ERROR(Usable());
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t child = nullptr;
    TANDEM_NCCL_RETURN_IF_ERROR(comm_,
                                ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, &config));
    TANDEM_RETURN_IF_ERROR(AwaitComm(comm_, deadline, "ncclCommSplit"));
    if (child == nullptr) return std::unique_ptr<Communicator>();
    TANDEM_RETURN_IF_ERROR(AwaitComm(child, deadline, "ncclCommSplit (child)"));
    int child_rank = 0, child_size = 0;
    TANDEM_NCCL_RETURN_IF_ERROR(child, ncclCommUserRank(child, &child_rank));
    TANDEM_NCCL_RETURN_IF_ERROR(child, ncclCommCount(child, &child_size));
    cudaStream_t s = nullptr;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    NcclOptions o = options_;
    o.prefix = absl::StrCat(options_.prefix, "split", splits_++, ".", color, "/");
    return std::unique_ptr<Communicator>(new NcclCommunicator(child, store_, child_rank, child_size, o, s));
  }

  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    TANDEM_RETURN_IF_ERROR(Usable());
    std::vector<std::string> parts;
    for (const P2POp& p : ops) {
      const char* name = p.kind == P2POp::Kind::kSend ? "send" : "recv";
      TANDEM_RETURN_IF_ERROR(CheckPeer(name, p.peer, size_));
      TANDEM_RETURN_IF_ERROR(CheckCount(name, p.count, p.data));
      parts.push_back(absl::StrFormat("%s %d", p.kind == P2POp::Kind::kSend ? "send to" : "recv from", p.peer));
    }
    return Launch(absl::StrCat("send_recv [", absl::StrJoin(parts, ", "), "]"), [&]() -> absl::Status {
      for (const P2POp& p : ops) {
        TANDEM_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(p.dtype));
        if (p.kind == P2POp::Kind::kSend) {
          TANDEM_NCCL_RETURN_IF_ERROR(comm_, ncclSend(p.data, p.count, t, p.peer, comm_, stream_));
        } else {
          TANDEM_NCCL_RETURN_IF_ERROR(comm_, ncclRecv(p.data, p.count, t, p.peer, comm_, stream_));
        }
      }
      return absl::OkStatus();
    });
  }

  WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckCollective("all_reduce", count, send, recv, t, true, 1));
    TANDEM_ASSIGN_OR_RETURN(ncclDataType_t nt, NcclType(t));
    return Launch(absl::StrFormat("all_reduce %s x%d", DataTypeName(t), count), [&]() {
      return NcclStatus(ncclAllReduce(send, recv, count, nt, NcclOp(op), comm_, stream_), comm_, "ncclAllReduce");
    });
  }
  WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCollective("all_gather", count, send, recv, t, false, 2));
    TANDEM_ASSIGN_OR_RETURN(ncclDataType_t nt, NcclType(t));
    return Launch(absl::StrFormat("all_gather %s x%d", DataTypeName(t), count), [&]() {
      return NcclStatus(ncclAllGather(send, recv, count, nt, comm_, stream_), comm_, "ncclAllGather");
    });
  }
  WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckCollective("reduce_scatter", count, send, recv, t, true, 3));
    TANDEM_ASSIGN_OR_RETURN(ncclDataType_t nt, NcclType(t));
    return Launch(absl::StrFormat("reduce_scatter %s x%d", DataTypeName(t), count), [&]() {
      return NcclStatus(ncclReduceScatter(send, recv, count, nt, NcclOp(op), comm_, stream_), comm_,
                        "ncclReduceScatter");
    });
  }
  WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) override {
    TANDEM_RETURN_IF_ERROR(CheckPeer("broadcast root", root, size_));
    TANDEM_RETURN_IF_ERROR(CheckCollective("broadcast", count, buffer, buffer, t, false, 4 + 16 * root));
    TANDEM_ASSIGN_OR_RETURN(ncclDataType_t nt, NcclType(t));
    return Launch(absl::StrFormat("broadcast %s x%d root %d", DataTypeName(t), count, root), [&]() {
      return NcclStatus(ncclBroadcast(buffer, buffer, count, nt, root, comm_, stream_), comm_, "ncclBroadcast");
    });
  }
  WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) override {
    std::vector<int64_t> counts(size_, count);
    if (count > 0 && send == recv && size_ > 1) {
      return absl::InvalidArgumentError("all_to_all: in-place (send == recv) is not supported");
    }
    return AllToAllV(send, counts, recv, counts, t);
  }
  // Grouped sends and receives, one per peer (NCCL has no all-to-all-v).
  WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                   absl::Span<const int64_t> recv_counts, DataType t) override {
    TANDEM_RETURN_IF_ERROR(Usable());
    TANDEM_RETURN_IF_ERROR(CheckAllToAllV(send, send_counts, recv, recv_counts, size_));
    int64_t total = 0;
    for (int p = 0; p < size_; ++p) total += send_counts[p];
    TANDEM_RETURN_IF_ERROR(Fingerprint(6, t, total));
    TANDEM_ASSIGN_OR_RETURN(ncclDataType_t nt, NcclType(t));
    const int64_t es = SizeOf(t);
    return Launch(absl::StrFormat("all_to_all_v %s send %d", DataTypeName(t), total), [&]() -> absl::Status {
      int64_t s_at = 0, r_at = 0;
      for (int p = 0; p < size_; ++p) {
        TANDEM_NCCL_RETURN_IF_ERROR(
            comm_, ncclSend(static_cast<const char*>(send) + s_at * es, send_counts[p], nt, p, comm_, stream_));
        TANDEM_NCCL_RETURN_IF_ERROR(
            comm_, ncclRecv(static_cast<char*>(recv) + r_at * es, recv_counts[p], nt, p, comm_, stream_));
        s_at += send_counts[p];
        r_at += recv_counts[p];
      }
      return absl::OkStatus();
    });
  }
  WorkOr Barrier() override {
    TANDEM_RETURN_IF_ERROR(Usable());
    if (scratch_ == nullptr) TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, sizeof(int32_t)));
    return AllReduce(scratch_, scratch_, 1, DataType::kI32, ReduceOp::kSum);
  }

  absl::Status Progress(Op* target, Deadline deadline) {
    while (!target->done) {
      std::shared_ptr<Op> op = pending_.front();
      absl::Status s = Poll(*op, deadline);
      if (absl::IsDeadlineExceeded(s)) {
        // NCCL cannot cancel: abort, so no rank waits forever on this one.
        aborted_ = true;
        abort_reason_ = std::string(s.message());
        ncclCommAbort(comm_);
        return absl::DeadlineExceededError(
            absl::StrCat(s.message(), "; communicator aborted; ", recorder_.Dump(rank_)));
      }
      op->status = s;
      op->done = true;
      recorder_.Completed(op->seq);
      cudaEventDestroy(op->event);
      op->event = nullptr;
      pending_.pop_front();
    }
    return target->status;
  }

 private:
  absl::Status Usable() const {
    if (aborted_) {
      return absl::FailedPreconditionError(
          absl::StrCat("nccl communicator on rank ", rank_, " was aborted after: ", abort_reason_));
    }
    return absl::OkStatus();
  }

  absl::Status CheckCollective(absl::string_view op, int64_t count, const void* send, const void* recv, DataType t,
                               bool reduce, int64_t code) {
    TANDEM_RETURN_IF_ERROR(Usable());
    if (reduce) TANDEM_RETURN_IF_ERROR(CheckReducible(op, t));
    TANDEM_RETURN_IF_ERROR(CheckCount(op, count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount(op, count, recv));
    return Fingerprint(code, t, count);
  }

  // Debug mode: every rank compares (op, dtype, count, sequence) with rank 0.
  absl::Status Fingerprint(int64_t op, DataType t, int64_t count) {
    const int64_t seq = collectives_++;
    if (!options_.debug_fingerprints) return absl::OkStatus();
    const std::string mine = absl::StrFormat("op %d %s x%d", op, DataTypeName(t), count);
    const std::string key = absl::StrCat(options_.prefix, "fp/", seq, "/");
    TANDEM_RETURN_IF_ERROR(store_->Set(absl::StrCat(key, rank_), mine));
    TANDEM_ASSIGN_OR_RETURN(std::string first, store_->Get(absl::StrCat(key, 0), Deadline::In(options_.init_timeout)));
    if (first != mine) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "collective #%d: ranks disagree: rank 0 called %s, rank %d called %s", seq, first, rank_, mine));
    }
    return absl::OkStatus();
  }

  template <typename Fn>
  WorkOr Launch(const std::string& name, Fn&& calls) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    auto op = std::make_shared<Op>();
    op->seq = next_seq_++;
    op->name = name;
    TANDEM_NCCL_RETURN_IF_ERROR(comm_, ncclGroupStart());
    absl::Status s = calls();
    const ncclResult_t end = ncclGroupEnd();
    TANDEM_RETURN_IF_ERROR(s);
    TANDEM_RETURN_IF_ERROR(NcclStatus(end, comm_, "ncclGroupEnd"));
    TANDEM_RETURN_IF_ERROR(AwaitComm(comm_, Deadline::In(options_.init_timeout), "ncclGroupEnd"));
    TANDEM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&op->event, cudaEventDisableTiming));
    TANDEM_CUDA_RETURN_IF_ERROR(cudaEventRecord(op->event, stream_));
    recorder_.Posted(op->seq, name);
    pending_.push_back(op);
    return std::unique_ptr<Work>(new NcclWork(this, op));
  }

  absl::Status Poll(const Op& op, Deadline deadline) {
    while (true) {
      const cudaError_t e = cudaEventQuery(op.event);
      if (e == cudaSuccess) return absl::OkStatus();
      if (e != cudaErrorNotReady) return CudaStatus(e, "cudaEventQuery", __FILE__, __LINE__);
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) return NcclStatus(state, comm_, op.name.c_str());
      if (deadline.expired()) {
        return absl::DeadlineExceededError(
            absl::StrFormat("%s seq %d on rank %d: deadline %s exceeded (NCCL does not say which peer is missing)",
                            op.name, op.seq, rank_, absl::FormatDuration(deadline.timeout())));
      }
      absl::SleepFor(absl::Microseconds(20));
    }
  }

  ncclComm_t comm_;
  Store* store_;
  const int rank_, size_;
  const NcclOptions options_;
  cudaStream_t stream_;
  void* scratch_ = nullptr;
  int64_t next_seq_ = 0, collectives_ = 0;
  int splits_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
  std::deque<std::shared_ptr<Op>> pending_;
  FlightRecorder recorder_;
};

std::string Hostname() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

}  // namespace

int NcclRuntimeVersion() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return 0;
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return v;
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Store* store, int rank, int size,
                                                                     const NcclOptions& options) {
  if (VisibleGpuCount() == 0) return absl::UnavailableError("nccl: no GPU visible");
  const int version = NcclRuntimeVersion();
  if (version < 21800) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "nccl: runtime version %d is older than 2.18 (needed for ncclCommSplit and non-blocking init)", version));
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  const Deadline deadline = Deadline::In(options.init_timeout);
  // Two ranks on one GPU: NCCL refuses; say so ourselves, before init.
  cudaDeviceProp prop;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options.device));
  const std::string gpu = absl::StrCat(Hostname(), "/", absl::BytesToHexString(absl::string_view(prop.uuid.bytes, 16)));
  TANDEM_RETURN_IF_ERROR(store->Set(absl::StrCat(options.prefix, "gpu/", rank), gpu));
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    TANDEM_ASSIGN_OR_RETURN(std::string other, store->Get(absl::StrCat(options.prefix, "gpu/", r), deadline));
    if (other == gpu) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "nccl: ranks %d and %d are both on GPU %s: NCCL cannot run two ranks on one GPU (use the cuda_local "
          "backend for several ranks on one GPU)",
          std::min(r, rank), std::max(r, rank), gpu));
    }
  }
  ncclUniqueId id;
  const std::string id_key = absl::StrCat(options.prefix, "unique_id");
  if (rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    TANDEM_RETURN_IF_ERROR(NcclStatus(r, nullptr, "ncclGetUniqueId"));
    TANDEM_RETURN_IF_ERROR(store->Set(id_key, absl::string_view(id.internal, sizeof(id.internal))));
  } else {
    TANDEM_ASSIGN_OR_RETURN(std::string bytes, store->Get(id_key, deadline));
    if (bytes.size() != sizeof(id.internal)) {
      return absl::InternalError(
          absl::StrFormat("nccl: unique id of %d bytes, expected %d", bytes.size(), sizeof(id.internal)));
    }
    std::memcpy(id.internal, bytes.data(), bytes.size());
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  TANDEM_RETURN_IF_ERROR(
      NcclStatus(ncclCommInitRankConfig(&comm, size, id, rank, &config), comm, "ncclCommInitRankConfig"));
  absl::Status init = AwaitComm(comm, deadline, absl::StrFormat("ncclCommInitRank of rank %d of %d", rank, size));
  if (!init.ok()) {
    ncclCommAbort(comm);
    return init;
  }
  cudaStream_t stream = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<Communicator>(new NcclCommunicator(comm, store, rank, size, options, stream));
}

cudaStream_t NcclStream(Communicator& comm) {
  auto* c = dynamic_cast<NcclCommunicator*>(&comm);
  return c == nullptr ? nullptr : c->stream();
}

}  // namespace tandem::comm
