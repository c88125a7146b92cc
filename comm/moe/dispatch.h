// -----------------------------------------------------------------------------
// File: dispatch.h
// -----------------------------------------------------------------------------
//
// MoE token dispatch and combine in the style of DeepEP's normal kernels,
// built on any Communicator (one all-to-all-v per call), host buffers.
//
// Experts are split evenly over the ranks: expert e lives on rank
// e / (num_experts / ranks) (use EPLB physical slot ids as "experts" to
// dispatch to replicas). A token goes once to every rank holding at least one
// of its experts, carrying its hidden vector, its local expert ids (-1 where
// the expert is elsewhere) and weights (0 there). Received rows are ordered by
// (source rank, source token): deterministic.
//
// Combine is the reverse: each rank returns one row per received token (its
// experts' contributions already summed by the caller), and the source sums,
// for each token, the rows of the ranks it went to in increasing rank order,
// accumulating in f32 from 0 and rounding once to the output dtype. So
// results are bit-reproducible and equal on every backend.
//
// The Handle from Dispatch() serves Combine(), cached dispatch of new data
// with the same routing, and the backward pass: the gradient of dispatch is
// Combine() of the row gradients, the gradient of combine is DispatchCached()
// of the output gradient.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(auto d, Dispatch(comm, x, DataType::kF32, hidden,
//                                            routing, {}, deadline));
//   ... y[row] = sum over k with d.local_expert[row, k] >= 0 of
//       d.weights[row, k] * expert(d.local_expert[row, k], d.x[row]) ...
//   TANDEM_ASSIGN_OR_RETURN(std::vector<char> out,
//                           Combine(comm, d.handle, y.data(), DataType::kF32, deadline));

#ifndef TANDEM_COMM_MOE_DISPATCH_H_
#define TANDEM_COMM_MOE_DISPATCH_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/deadline.h"
#include "comm/communicator.h"
#include "comm/types.h"

namespace tandem::comm::moe {

// One batch's routing on this rank.
struct Routing {
  int num_tokens = 0;
  int top_k = 0;
  int num_experts = 0;                   // in total; a multiple of ranks
  absl::Span<const int64_t> topk_idx;    // [tokens x top_k], -1 = unused
  absl::Span<const float> topk_weights;  // [tokens x top_k]
};

struct Layout {
  std::vector<int32_t> tokens_per_rank;    // tokens with >= 1 expert there
  std::vector<int32_t> tokens_per_expert;  // (token, k) pairs per expert
  std::vector<uint8_t> is_token_in_rank;   // [tokens x ranks]
};

// GetDispatchLayout()
//
// Counts for `routing` over `num_ranks` ranks. kInvalidArgument for expert
// ids outside [-1, num_experts), experts not divisible by ranks, or spans of
// the wrong length.
absl::StatusOr<Layout> GetDispatchLayout(const Routing& routing, int num_ranks);

struct DispatchOptions {
  // Per-local-expert counts are rounded up to a multiple of this.
  int expert_alignment = 1;
  // Send x as FP8 e4m3 with one f32 scale per 128 channels (DeepEP's
  // recipe: scale = max(|x|, 1e-4) / 448 per group); received rows are
  // dequantized into Dispatched::x.
  bool fp8 = false;
};

// What Combine() and cached dispatch need; opaque to callers.
struct Handle {
  int num_ranks = 0;
  int num_tokens = 0;  // on this rank, before dispatch
  int hidden = 0;
  std::vector<int32_t> send_tokens;  // token ids in send order (rank-major)
  std::vector<int64_t> send_counts;  // rows to each rank
  std::vector<int64_t> recv_counts;  // rows from each rank
};

struct Dispatched {
  int64_t num_rows = 0;
  std::vector<char> x;                     // [rows x hidden] in the input dtype
  std::vector<int32_t> local_expert;       // [rows x top_k], -1 elsewhere
  std::vector<float> weights;              // [rows x top_k], 0 elsewhere
  std::vector<int32_t> tokens_per_expert;  // per local expert, aligned
  std::vector<int64_t> source;             // [rows] src_rank << 32 | src token
  Handle handle;
};

// Dispatch()
//
// Collective over `comm`: sends each token of x [tokens x hidden] (f32 or
// bf16) to the ranks holding its experts. Every rank must call it.
absl::StatusOr<Dispatched> Dispatch(Communicator& comm, const void* x, DataType dtype, int hidden,
                                    const Routing& routing, const DispatchOptions& options, Deadline deadline);

// DispatchCached()
//
// Sends new data [tokens x hidden] with the routing of `handle`; returns
// [rows x hidden] in the same row order as the original dispatch.
absl::StatusOr<std::vector<char>> DispatchCached(Communicator& comm, const Handle& handle, const void* x,
                                                 DataType dtype, Deadline deadline);

// Combine()
//
// Collective: returns rows [rows x hidden] to their sources and sums them per
// token in rank order (f32), giving [tokens x hidden] in `dtype`. Tokens sent
// nowhere (all top-k slots -1) are zero.
absl::StatusOr<std::vector<char>> Combine(Communicator& comm, const Handle& handle, const void* rows, DataType dtype,
                                          Deadline deadline);

// Asynchronous forms, to overlap the all-to-alls with other work
// (comm/overlap): Start posts, Finish waits and returns what the blocking
// function returns (which is Start then Finish). Operations are posted on
// `comm` in call order, so ranks must call the same steps in the same order.
//
// PendingDispatch: Start() lays the rows out and posts the count exchange
// (x may be released once it returns); PostRows() waits for the counts and
// posts the rows; Finish() waits for them (posting them first if needed).
class PendingDispatch {
 public:
  static absl::StatusOr<PendingDispatch> Start(Communicator& comm, const void* x, DataType dtype, int hidden,
                                               const Routing& routing, const DispatchOptions& options);
  absl::Status PostRows(Deadline deadline);
  absl::StatusOr<Dispatched> Finish(Deadline deadline);

 private:
  Communicator* comm_ = nullptr;
  DataType dtype_ = DataType::kF32;
  DispatchOptions options_;
  int top_k_ = 0;
  int per_rank_ = 0;
  int64_t payload_ = 0;
  int64_t record_ = 0;
  std::vector<char> send_, recv_;
  std::unique_ptr<Work> work_;
  bool rows_posted_ = false;
  Dispatched out_;
};

// PendingRows: one all-to-all of rows with a dispatch's handle, which must
// outlive it. StartDispatchCached() sends new token data as the dispatch did
// (x may be released once it returns); StartCombine() sends rows back to
// their tokens (`rows` must stay valid until Finish()) and Finish() sums
// them per token in rank order, as Combine().
class PendingRows {
 public:
  static absl::StatusOr<PendingRows> StartDispatchCached(Communicator& comm, const Handle& handle, const void* x,
                                                         DataType dtype);
  static absl::StatusOr<PendingRows> StartCombine(Communicator& comm, const Handle& handle, const void* rows,
                                                  DataType dtype);
  absl::StatusOr<std::vector<char>> Finish(Deadline deadline);

 private:
  bool combine_ = false;
  DataType dtype_ = DataType::kF32;
  const Handle* handle_ = nullptr;
  std::vector<char> send_, recv_;
  std::unique_ptr<Work> work_;
};

// Building blocks shared by Dispatch() and the GPU path (dispatch_gpu.h).
//
// PlanSends(): the handle's send side (tokens in rank-major send order and
// counts per rank; recv_counts left empty).
Handle PlanSends(const Layout& layout, int num_ranks, int num_tokens, int hidden);
// RowMetadata(): for token `t` sent to rank `dest` by rank `me`, writes
// top_k local expert ids (int32, -1 elsewhere), top_k weights (f32, 0
// elsewhere) and the source id (int64 me << 32 | t), 8 * top_k + 8 bytes.
void RowMetadata(const Routing& routing, int num_ranks, int me, int dest, int t, char* out);
// ReadRowMetadata(): the inverse, appending to a Dispatched's vectors and
// counting tokens per local expert.
void ReadRowMetadata(const char* in, int top_k, Dispatched* out);

// FP8 e4m3 helpers (round to nearest even, saturating at +-448).
uint8_t FloatToE4M3(float f);
float E4M3ToFloat(uint8_t v);

}  // namespace tandem::comm::moe

#endif  // TANDEM_COMM_MOE_DISPATCH_H_
