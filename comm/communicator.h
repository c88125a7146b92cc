// -----------------------------------------------------------------------------
// File: communicator.h
// -----------------------------------------------------------------------------
//
// One interface for every backend: threads in one process (`local`), virtual
// ranks on one GPU (`cuda_local`), NCCL (`nccl`) and processes over a store
// (`store`). Operations are posted and return a Work handle; Wait() takes a
// deadline, and a timeout is kDeadlineExceeded naming the operation, its
// sequence number and the ranks waited for, followed by the rank's flight
// recorder (its last posted and completed operations).
//
// Ordering: each rank progresses its operations in posting order. Point-to-
// point operations of one SendRecv() call are posted together and complete
// together; on every directed rank pair the k-th send matches the k-th
// receive, which must agree on count and dtype. Collectives must be called
// in the same order with the same op, dtype and count on every rank; a rank
// that disagrees gets kInvalidArgument instead of corrupt data.
// Invalid arguments (bad peer, negative count, kBytes in a reduction) are
// rejected at post time and leave the communicator usable.
//
// Example:
//   TANDEM_RETURN_IF_ERROR(PostAndWait(
//       comm.AllReduce(x, x, n, DataType::kF32, ReduceOp::kSum), deadline));

#ifndef TANDEM_COMM_COMMUNICATOR_H_
#define TANDEM_COMM_COMMUNICATOR_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/deadline.h"
#include "comm/types.h"

namespace tandem::comm {

// One send or receive of a SendRecv() batch. Buffers are host or device
// memory according to the backend and stay untouched until Wait() returns.
struct P2POp {
  enum class Kind : uint8_t { kSend, kRecv };
  Kind kind = Kind::kSend;
  int peer = -1;
  void* data = nullptr;
  int64_t count = 0;
  DataType dtype = DataType::kF32;

  static P2POp Send(int peer, const void* data, int64_t count, DataType t) {
    return {Kind::kSend, peer, const_cast<void*>(data), count, t};
  }
  static P2POp Recv(int peer, void* data, int64_t count, DataType t) { return {Kind::kRecv, peer, data, count, t}; }
};

// Handle of a posted operation.
class Work {
 public:
  virtual ~Work() = default;

  // Wait()
  //
  // Blocks until the operation completed (OK), failed, or `deadline` passed
  // (kDeadlineExceeded naming the operation, sequence number and the peers
  // it still waits for). Waiting again after completion returns the same
  // status at once.
  virtual absl::Status Wait(Deadline deadline) = 0;

  // IsCompleted()
  //
  // Non-blocking: true once Wait() would return without waiting.
  virtual bool IsCompleted() = 0;
};

using WorkOr = absl::StatusOr<std::unique_ptr<Work>>;

class Communicator {
 public:
  static constexpr int kNoColor = -1;

  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual absl::string_view backend() const = 0;

  // Split()
  //
  // Collective: ranks passing the same color >= 0 form a new communicator,
  // ranked by (key, rank). kNoColor takes part but gets nullptr.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) = 0;

  // SendRecv()
  //
  // Posts the sends and receives of `ops` as one batch (NCCL: one group).
  virtual WorkOr SendRecv(absl::Span<const P2POp> ops) = 0;

  // Collectives. `send` may equal `recv` (in place) where sizes allow.
  // AllReduce: count elements. AllGather: `count` from each rank, `recv`
  // holds size() * count in rank order. ReduceScatter: `send` holds
  // size() * count, `recv` gets this rank's block. AllToAll: `count` to and
  // from each peer, blocks in rank order. AllToAllV: contiguous segments in
  // rank order; send_counts[p] must equal peer p's recv_counts[rank()].
  virtual WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) = 0;
  virtual WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) = 0;
  virtual WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) = 0;
  virtual WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) = 0;
  virtual WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) = 0;
  virtual WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                           absl::Span<const int64_t> recv_counts, DataType t) = 0;
  virtual WorkOr Barrier() = 0;
};

// PostAndWait()
//
// Waits for a just-posted operation: the post error, or Wait(deadline).
absl::Status PostAndWait(WorkOr work, Deadline deadline);

// CheckCount(), CheckPeer(), CheckReducible(), CheckAllToAllV(): the
// post-time argument checks every backend shares; kInvalidArgument naming
// the operation and the bad value.
absl::Status CheckCount(absl::string_view op, int64_t count, const void* data);
absl::Status CheckPeer(absl::string_view op, int peer, int size);
absl::Status CheckReducible(absl::string_view op, DataType t);
absl::Status CheckAllToAllV(const void* send, absl::Span<const int64_t> send_counts, const void* recv,
                            absl::Span<const int64_t> recv_counts, int size);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_COMMUNICATOR_H_
