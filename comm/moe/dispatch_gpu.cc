#include "comm/moe/dispatch_gpu.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "base/cuda_check.h"
#include "base/status_macros.h"
#include "comm/moe/row_kernels.h"

namespace tandem::comm::moe {
namespace {

// Copies on `stream` and waits: a plain cudaMemcpy from pageable memory may
// return before the data lands, and other streams are not ordered after it.
absl::StatusOr<DeviceBuffer> Upload(const void* host, int64_t bytes, cudaStream_t stream) {
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer b, AllocDevice(bytes));
  if (bytes > 0) {
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.get(), host, bytes, cudaMemcpyHostToDevice, stream));
    TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  }
  return b;
}

absl::Status Download(const DeviceBuffer& b, void* host, int64_t bytes) {
  if (bytes > 0) TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(host, b.get(), bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

// All-to-all-v of device bytes with per-rank byte counts.
absl::StatusOr<DeviceBuffer> Exchange(Communicator& comm, const DeviceBuffer& send,
                                      const std::vector<int64_t>& send_bytes, const std::vector<int64_t>& recv_bytes,
                                      Deadline deadline) {
  int64_t total = 0;
  for (int64_t b : recv_bytes) total += b;
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer recv, AllocDevice(total));
  TANDEM_RETURN_IF_ERROR(
      PostAndWait(comm.AllToAllV(send.get(), send_bytes, recv.get(), recv_bytes, DataType::kBytes), deadline));
  return recv;
}

std::vector<int64_t> Scaled(const std::vector<int64_t>& counts, int64_t factor) {
  std::vector<int64_t> out(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) out[i] = counts[i] * factor;
  return out;
}

// The rows of x to send, in the handle's send order, gathered on `stream`
// (synchronized: the row ids' buffer is freed on return).
absl::StatusOr<DeviceBuffer> GatherSends(const Handle& h, const void* x, int64_t row_bytes, cudaStream_t stream) {
  const int64_t sends = static_cast<int64_t>(h.send_tokens.size());
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer tokens_dev, Upload(h.send_tokens.data(), 4 * sends, stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer gathered, AllocDevice(sends * row_bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(
      EnqueueGatherRows(x, static_cast<const int32_t*>(tokens_dev.get()), sends, row_bytes, gathered.get(), stream));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return gathered;
}

absl::Status CheckDtype(DataType dtype) {
  if (dtype != DataType::kF32 && dtype != DataType::kBF16) {
    return absl::InvalidArgumentError(absl::StrFormat("dtype: expected f32 or bf16, got %s", DataTypeName(dtype)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DeviceBuffer> AllocDevice(int64_t bytes) {
  void* p = nullptr;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, std::max<int64_t>(bytes, 16)));
  return DeviceBuffer{std::shared_ptr<void>(p, [](void* q) { cudaFree(q); }), bytes};
}

absl::StatusOr<DispatchedGpu> DispatchGpu(Communicator& comm, const void* x, DataType dtype, int hidden,
                                          const Routing& routing, const DispatchOptions& options, cudaStream_t stream,
                                          Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  if (hidden < 1 || options.expert_alignment < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("hidden and expert_alignment: expected >= 1, got %d and %d", hidden, options.expert_alignment));
  }
  const int ranks = comm.size(), me = comm.rank(), k = routing.top_k;
  TANDEM_ASSIGN_OR_RETURN(Layout layout, GetDispatchLayout(routing, ranks));
  const int per_rank = routing.num_experts / ranks;
  DispatchedGpu out;
  out.handle = PlanSends(layout, ranks, routing.num_tokens, hidden);
  Handle& h = out.handle;
  // Counts (device buffers: the communicator moves device memory).
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer counts_out, Upload(h.send_counts.data(), 8 * ranks, stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer counts_in, AllocDevice(8 * ranks));
  TANDEM_RETURN_IF_ERROR(PostAndWait(comm.AllToAll(counts_out.get(), counts_in.get(), 1, DataType::kI64), deadline));
  h.recv_counts.resize(ranks);
  TANDEM_RETURN_IF_ERROR(Download(counts_in, h.recv_counts.data(), 8 * ranks));
  for (int64_t c : h.recv_counts) out.num_rows += c;

  // Per-row metadata on the host: local ids, weights, source.
  const int64_t meta = 8 * int64_t{k} + 8;
  std::vector<char> meta_send(h.send_tokens.size() * meta);
  int64_t row = 0;
  for (int r = 0; r < ranks; ++r) {
    for (int64_t i = 0; i < h.send_counts[r]; ++i, ++row) {
      RowMetadata(routing, ranks, me, r, h.send_tokens[row], meta_send.data() + row * meta);
    }
  }
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer meta_dev, Upload(meta_send.data(), meta_send.size(), stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer meta_in,
                          Exchange(comm, meta_dev, Scaled(h.send_counts, meta), Scaled(h.recv_counts, meta), deadline));
  std::vector<char> meta_recv(out.num_rows * meta);
  TANDEM_RETURN_IF_ERROR(Download(meta_in, meta_recv.data(), meta_recv.size()));
  Dispatched meta_out;
  meta_out.tokens_per_expert.assign(per_rank, 0);
  for (int64_t i = 0; i < out.num_rows; ++i) ReadRowMetadata(meta_recv.data() + i * meta, k, &meta_out);
  out.local_expert = std::move(meta_out.local_expert);
  out.weights = std::move(meta_out.weights);
  out.source = std::move(meta_out.source);
  out.tokens_per_expert = std::move(meta_out.tokens_per_expert);
  for (int32_t& c : out.tokens_per_expert) {
    c = (c + options.expert_alignment - 1) / options.expert_alignment * options.expert_alignment;
  }

  // Rows: gather on the device, optionally as FP8, and exchange.
  const int64_t es = SizeOf(dtype), row_bytes = int64_t{hidden} * es;
  const int64_t sends = static_cast<int64_t>(h.send_tokens.size());
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer gathered, GatherSends(h, x, row_bytes, stream));
  if (!options.fp8) {
    TANDEM_ASSIGN_OR_RETURN(
        out.x, Exchange(comm, gathered, Scaled(h.send_counts, row_bytes), Scaled(h.recv_counts, row_bytes), deadline));
    return out;
  }
  const int64_t groups = (hidden + 127) / 128;
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer codes, AllocDevice(sends * hidden));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer scales, AllocDevice(sends * groups * 4));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueQuantizeFp8(gathered.get(), dtype, sends, hidden,
                                                 static_cast<uint8_t*>(codes.get()), static_cast<float*>(scales.get()),
                                                 stream));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer codes_in, Exchange(comm, codes, Scaled(h.send_counts, hidden),
                                                          Scaled(h.recv_counts, hidden), deadline));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer scales_in, Exchange(comm, scales, Scaled(h.send_counts, groups * 4),
                                                           Scaled(h.recv_counts, groups * 4), deadline));
  TANDEM_ASSIGN_OR_RETURN(out.x, AllocDevice(out.num_rows * row_bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueDequantizeFp8(static_cast<const uint8_t*>(codes_in.get()),
                                                   static_cast<const float*>(scales_in.get()), out.num_rows, hidden,
                                                   dtype, out.x.get(), stream));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return out;
}

absl::StatusOr<DeviceBuffer> DispatchCachedGpu(Communicator& comm, const Handle& h, const void* x, DataType dtype,
                                               cudaStream_t stream, Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  const int64_t row_bytes = int64_t{h.hidden} * SizeOf(dtype);
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer gathered, GatherSends(h, x, row_bytes, stream));
  return Exchange(comm, gathered, Scaled(h.send_counts, row_bytes), Scaled(h.recv_counts, row_bytes), deadline);
}

absl::StatusOr<DeviceBuffer> CombineGpu(Communicator& comm, const Handle& h, const void* rows, DataType dtype,
                                        cudaStream_t stream, Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // `rows` may come from `stream`
  const int64_t row_bytes = int64_t{h.hidden} * SizeOf(dtype);
  int64_t my_rows = 0;
  for (int64_t c : h.recv_counts) my_rows += c;
  DeviceBuffer source{std::shared_ptr<void>(const_cast<void*>(rows), [](void*) {}), my_rows * row_bytes};
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer back, Exchange(comm, source, Scaled(h.recv_counts, row_bytes),
                                                      Scaled(h.send_counts, row_bytes), deadline));
  // Per token, the returned rows in increasing rank order (send order is
  // rank-major, so a scan of send_tokens visits them in that order).
  std::vector<int32_t> offsets(h.num_tokens + 1, 0), order(h.send_tokens.size());
  for (int32_t t : h.send_tokens) ++offsets[t + 1];
  for (int t = 0; t < h.num_tokens; ++t) offsets[t + 1] += offsets[t];
  std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
  for (size_t i = 0; i < h.send_tokens.size(); ++i) order[fill[h.send_tokens[i]]++] = static_cast<int32_t>(i);
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer order_dev, Upload(order.data(), 4 * order.size(), stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer offsets_dev, Upload(offsets.data(), 4 * offsets.size(), stream));
  TANDEM_ASSIGN_OR_RETURN(DeviceBuffer out, AllocDevice(int64_t{h.num_tokens} * row_bytes));
  TANDEM_CUDA_RETURN_IF_ERROR(EnqueueSumRows(back.get(), static_cast<const int32_t*>(order_dev.get()),
                                             static_cast<const int32_t*>(offsets_dev.get()), h.num_tokens, h.hidden,
                                             dtype, out.get(), stream));
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return out;
}

}  // namespace tandem::comm::moe
