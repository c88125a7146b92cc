#include "comm/moe/dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::comm::moe {
namespace {

constexpr int kFp8Group = 128;

int64_t Groups(int hidden) { return (hidden + kFp8Group - 1) / kFp8Group; }

absl::Status CheckRouting(const Routing& r, int num_ranks) {
  if (num_ranks < 1) return absl::InvalidArgumentError(absl::StrFormat("ranks: expected >= 1, got %d", num_ranks));
  if (r.num_tokens < 0 || r.top_k < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("routing: expected tokens >= 0 and top_k >= 1, got %d and %d", r.num_tokens, r.top_k));
  }
  if (r.num_experts < 1 || r.num_experts % num_ranks != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_experts: expected a positive multiple of the %d ranks, got %d", num_ranks, r.num_experts));
  }
  const int64_t n = int64_t{r.num_tokens} * r.top_k;
  if (static_cast<int64_t>(r.topk_idx.size()) != n || static_cast<int64_t>(r.topk_weights.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("routing: expected %d x %d top-k ids and weights, got %d ids and %d weights", r.num_tokens,
                        r.top_k, r.topk_idx.size(), r.topk_weights.size()));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (r.topk_idx[i] < -1 || r.topk_idx[i] >= r.num_experts) {
      return absl::InvalidArgumentError(absl::StrFormat("topk_idx[%d][%d]: expected -1 or an expert in 0..%d, got %d",
                                                        i / r.top_k, i % r.top_k, r.num_experts - 1, r.topk_idx[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDtype(DataType t) {
  if (t != DataType::kF32 && t != DataType::kBF16) {
    return absl::InvalidArgumentError(absl::StrFormat("dtype: expected f32 or bf16, got %s", DataTypeName(t)));
  }
  return absl::OkStatus();
}

float Load(DataType t, const char* p) {
  if (t == DataType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Bf16ToFloat(h);
}

void Store(DataType t, float f, char* p) {
  if (t == DataType::kF32) {
    std::memcpy(p, &f, 4);
  } else {
    const uint16_t h = FloatToBf16(f);
    std::memcpy(p, &h, 2);
  }
}

// Quantizes one row (hidden values) into codes and per-group scales.
void QuantizeRow(DataType t, const char* x, int hidden, uint8_t* codes, float* scales) {
  const int64_t es = SizeOf(t);
  for (int64_t g = 0; g < Groups(hidden); ++g) {
    const int lo = g * kFp8Group, hi = std::min(hidden, lo + kFp8Group);
    float amax = 0;
    for (int c = lo; c < hi; ++c) amax = std::max(amax, std::fabs(Load(t, x + c * es)));
    const float scale = std::max(amax, 1e-4f) / 448.0f;
    scales[g] = scale;
    for (int c = lo; c < hi; ++c) codes[c] = FloatToE4M3(Load(t, x + c * es) / scale);
  }
}

void DequantizeRow(DataType t, const uint8_t* codes, const float* scales, int hidden, char* out) {
  for (int c = 0; c < hidden; ++c) Store(t, E4M3ToFloat(codes[c]) * scales[c / kFp8Group], out + c * SizeOf(t));
}

}  // namespace

uint8_t FloatToE4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;  // saturate
  if (a == 0.0f) return sign;
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp_field = e - 1 + 7;
  if (exp_field < 1) {  // subnormal: mant / 8 * 2^-6
    const int mant = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
    return sign | static_cast<uint8_t>(mant);  // mant == 8 is the smallest normal
  }
  int mant = static_cast<int>(std::nearbyint((std::ldexp(a, -(e - 1)) - 1.0f) * 8.0f));
  if (mant == 8) {
    mant = 0;
    ++exp_field;
  }
  if (exp_field > 15 || (exp_field == 15 && mant == 7)) return sign | 0x7e;
  return sign | static_cast<uint8_t>(exp_field << 3) | static_cast<uint8_t>(mant);
}

float E4M3ToFloat(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp_field = (v >> 3) & 0xf, mant = v & 7;
  if (exp_field == 15 && mant == 7) return NAN;
  if (exp_field == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(1.0f + mant / 8.0f, exp_field - 7);
}

absl::StatusOr<Layout> GetDispatchLayout(const Routing& routing, int num_ranks) {
  TANDEM_RETURN_IF_ERROR(CheckRouting(routing, num_ranks));
  const int per_rank = routing.num_experts / num_ranks;
  Layout l;
  l.tokens_per_rank.assign(num_ranks, 0);
  l.tokens_per_expert.assign(routing.num_experts, 0);
  l.is_token_in_rank.assign(int64_t{routing.num_tokens} * num_ranks, 0);
  for (int t = 0; t < routing.num_tokens; ++t) {
    uint8_t* in_rank = &l.is_token_in_rank[int64_t{t} * num_ranks];
    for (int k = 0; k < routing.top_k; ++k) {
      const int64_t e = routing.topk_idx[int64_t{t} * routing.top_k + k];
      if (e < 0) continue;
      ++l.tokens_per_expert[e];
      in_rank[e / per_rank] = 1;
    }
    for (int r = 0; r < num_ranks; ++r) l.tokens_per_rank[r] += in_rank[r];
  }
  return l;
}

Handle PlanSends(const Layout& layout, int num_ranks, int num_tokens, int hidden) {
  Handle h;
  h.num_ranks = num_ranks;
  h.num_tokens = num_tokens;
  h.hidden = hidden;
  h.send_counts.assign(num_ranks, 0);
  for (int r = 0; r < num_ranks; ++r) {
    for (int t = 0; t < num_tokens; ++t) {
      if (layout.is_token_in_rank[int64_t{t} * num_ranks + r]) h.send_tokens.push_back(t);
    }
    h.send_counts[r] = layout.tokens_per_rank[r];
  }
  return h;
}

void RowMetadata(const Routing& routing, int num_ranks, int me, int dest, int t, char* out) {
  const int k = routing.top_k, per_rank = routing.num_experts / num_ranks;
  for (int j = 0; j < k; ++j) {
    const int64_t e = routing.topk_idx[int64_t{t} * k + j];
    const bool local = e >= 0 && e / per_rank == dest;
    const int32_t id = local ? static_cast<int32_t>(e - int64_t{dest} * per_rank) : -1;
    const float w = local ? routing.topk_weights[int64_t{t} * k + j] : 0.0f;
    std::memcpy(out + 4 * j, &id, 4);
    std::memcpy(out + 4 * k + 4 * j, &w, 4);
  }
  const int64_t source = (int64_t{me} << 32) | t;
  std::memcpy(out + 8 * k, &source, 8);
}

void ReadRowMetadata(const char* in, int top_k, Dispatched* out) {
  const size_t at = out->local_expert.size();
  out->local_expert.resize(at + top_k);
  out->weights.resize(at + top_k);
  std::memcpy(&out->local_expert[at], in, 4 * top_k);
  std::memcpy(&out->weights[at], in + 4 * top_k, 4 * top_k);
  int64_t source;
  std::memcpy(&source, in + 8 * top_k, 8);
  out->source.push_back(source);
  for (int j = 0; j < top_k; ++j) {
    const int32_t e = out->local_expert[at + j];
    if (e >= 0 && e < static_cast<int32_t>(out->tokens_per_expert.size())) ++out->tokens_per_expert[e];
  }
}

absl::StatusOr<PendingDispatch> PendingDispatch::Start(Communicator& comm, const void* x, DataType dtype, int hidden,
                                                       const Routing& routing, const DispatchOptions& options) {
  const int ranks = comm.size(), me = comm.rank(), k = routing.top_k;
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  if (hidden < 1) return absl::InvalidArgumentError(absl::StrFormat("hidden: expected >= 1, got %d", hidden));
  if (options.expert_alignment < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("expert_alignment: expected >= 1, got %d", options.expert_alignment));
  }
  TANDEM_ASSIGN_OR_RETURN(Layout layout, GetDispatchLayout(routing, ranks));
  PendingDispatch d;
  d.comm_ = &comm;
  d.dtype_ = dtype;
  d.options_ = options;
  d.top_k_ = k;
  d.per_rank_ = routing.num_experts / ranks;
  const int64_t es = SizeOf(dtype);
  // Row record: payload (x, or FP8 codes + scales), local ids, weights, source.
  d.payload_ = options.fp8 ? hidden + 4 * Groups(hidden) : hidden * es;
  d.record_ = d.payload_ + 8 * int64_t{k} + 8;
  d.out_.handle = PlanSends(layout, ranks, routing.num_tokens, hidden);
  Handle& h = d.out_.handle;
  h.recv_counts.assign(ranks, 0);
  d.send_.resize(h.send_tokens.size() * d.record_);
  std::vector<float> scales(Groups(hidden));
  int64_t row = 0;
  for (int r = 0; r < ranks; ++r) {
    for (int64_t i = 0; i < h.send_counts[r]; ++i, ++row) {
      const int t = h.send_tokens[row];
      char* rec = d.send_.data() + row * d.record_;
      const char* xt = static_cast<const char*>(x) + int64_t{t} * hidden * es;
      if (options.fp8) {
        QuantizeRow(dtype, xt, hidden, reinterpret_cast<uint8_t*>(rec), scales.data());
        std::memcpy(rec + hidden, scales.data(), 4 * scales.size());
      } else {
        std::memcpy(rec, xt, hidden * es);
      }
      RowMetadata(routing, ranks, me, r, t, rec + d.payload_);
    }
  }
  // The count exchange: the receivers size their buffers with it.
  TANDEM_ASSIGN_OR_RETURN(d.work_, comm.AllToAll(h.send_counts.data(), h.recv_counts.data(), 1, DataType::kI64));
  return d;
}

absl::Status PendingDispatch::PostRows(Deadline deadline) {
  if (work_ == nullptr || rows_posted_) return absl::FailedPreconditionError("dispatch: rows already posted");
  TANDEM_RETURN_IF_ERROR(work_->Wait(deadline));
  const Handle& h = out_.handle;
  std::vector<int64_t> send_bytes(h.num_ranks), recv_bytes(h.num_ranks);
  for (int r = 0; r < h.num_ranks; ++r) {
    if (h.recv_counts[r] < 0 || h.recv_counts[r] > (int64_t{1} << 31)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("dispatch: rank %d announces %d rows: expected 0..2^31", r, h.recv_counts[r]));
    }
    send_bytes[r] = h.send_counts[r] * record_;
    recv_bytes[r] = h.recv_counts[r] * record_;
    out_.num_rows += h.recv_counts[r];
  }
  recv_.resize(out_.num_rows * record_);
  TANDEM_ASSIGN_OR_RETURN(work_,
                          comm_->AllToAllV(send_.data(), send_bytes, recv_.data(), recv_bytes, DataType::kBytes));
  rows_posted_ = true;
  return absl::OkStatus();
}

absl::StatusOr<Dispatched> PendingDispatch::Finish(Deadline deadline) {
  if (!rows_posted_) TANDEM_RETURN_IF_ERROR(PostRows(deadline));
  TANDEM_RETURN_IF_ERROR(work_->Wait(deadline));
  work_.reset();
  const int hidden = out_.handle.hidden;
  const int64_t es = SizeOf(dtype_);
  out_.x.resize(out_.num_rows * hidden * es);
  out_.tokens_per_expert.assign(per_rank_, 0);
  std::vector<float> scales(Groups(hidden));
  for (int64_t i = 0; i < out_.num_rows; ++i) {
    const char* rec = recv_.data() + i * record_;
    if (options_.fp8) {
      std::memcpy(scales.data(), rec + hidden, 4 * scales.size());
      DequantizeRow(dtype_, reinterpret_cast<const uint8_t*>(rec), scales.data(), hidden,
                    out_.x.data() + i * hidden * es);
    } else {
      std::memcpy(out_.x.data() + i * hidden * es, rec, hidden * es);
    }
    ReadRowMetadata(rec + payload_, top_k_, &out_);
  }
  for (int32_t& c : out_.tokens_per_expert) {
    c = (c + options_.expert_alignment - 1) / options_.expert_alignment * options_.expert_alignment;
  }
  send_.clear();
  recv_.clear();
  return std::move(out_);
}

absl::StatusOr<PendingRows> PendingRows::StartDispatchCached(Communicator& comm, const Handle& h, const void* x,
                                                             DataType dtype) {
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  if (h.num_ranks != comm.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("handle: made for %d ranks, communicator has %d", h.num_ranks, comm.size()));
  }
  PendingRows p;
  const int64_t row_bytes = int64_t{h.hidden} * SizeOf(dtype);
  p.send_.resize(h.send_tokens.size() * row_bytes);
  for (size_t i = 0; i < h.send_tokens.size(); ++i) {
    std::memcpy(p.send_.data() + i * row_bytes, static_cast<const char*>(x) + h.send_tokens[i] * row_bytes, row_bytes);
  }
  std::vector<int64_t> send_bytes(h.num_ranks), recv_bytes(h.num_ranks);
  int64_t rows = 0;
  for (int r = 0; r < h.num_ranks; ++r) {
    send_bytes[r] = h.send_counts[r] * row_bytes;
    recv_bytes[r] = h.recv_counts[r] * row_bytes;
    rows += h.recv_counts[r];
  }
  p.recv_.resize(rows * row_bytes);
  TANDEM_ASSIGN_OR_RETURN(p.work_,
                          comm.AllToAllV(p.send_.data(), send_bytes, p.recv_.data(), recv_bytes, DataType::kBytes));
  return p;
}

absl::StatusOr<PendingRows> PendingRows::StartCombine(Communicator& comm, const Handle& h, const void* rows,
                                                      DataType dtype) {
  TANDEM_RETURN_IF_ERROR(CheckDtype(dtype));
  if (h.num_ranks != comm.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("handle: made for %d ranks, communicator has %d", h.num_ranks, comm.size()));
  }
  PendingRows p;
  p.combine_ = true;
  p.dtype_ = dtype;
  p.handle_ = &h;
  const int64_t row_bytes = int64_t{h.hidden} * SizeOf(dtype);
  // Rows go back the way they came: my recv counts are now my send counts.
  std::vector<int64_t> send_bytes(h.num_ranks), recv_bytes(h.num_ranks);
  for (int r = 0; r < h.num_ranks; ++r) {
    send_bytes[r] = h.recv_counts[r] * row_bytes;
    recv_bytes[r] = h.send_counts[r] * row_bytes;
  }
  p.recv_.resize(h.send_tokens.size() * row_bytes);
  TANDEM_ASSIGN_OR_RETURN(p.work_, comm.AllToAllV(rows, send_bytes, p.recv_.data(), recv_bytes, DataType::kBytes));
  return p;
}

absl::StatusOr<std::vector<char>> PendingRows::Finish(Deadline deadline) {
  if (work_ == nullptr) return absl::FailedPreconditionError("rows: already finished");
  TANDEM_RETURN_IF_ERROR(work_->Wait(deadline));
  work_.reset();
  send_.clear();
  if (!combine_) return std::move(recv_);
  const Handle& h = *handle_;
  const int64_t es = SizeOf(dtype_), row_bytes = int64_t{h.hidden} * es;
  // Per token, the rows of the ranks it went to, in rank order, in f32.
  std::vector<float> acc(int64_t{h.num_tokens} * h.hidden, 0.0f);
  for (size_t i = 0; i < h.send_tokens.size(); ++i) {
    float* a = &acc[int64_t{h.send_tokens[i]} * h.hidden];
    const char* row = recv_.data() + i * row_bytes;
    for (int c = 0; c < h.hidden; ++c) a[c] += Load(dtype_, row + c * es);
  }
  std::vector<char> out(int64_t{h.num_tokens} * row_bytes);
  for (int64_t i = 0; i < static_cast<int64_t>(acc.size()); ++i) Store(dtype_, acc[i], out.data() + i * es);
  recv_.clear();
  return out;
}

absl::StatusOr<Dispatched> Dispatch(Communicator& comm, const void* x, DataType dtype, int hidden,
                                    const Routing& routing, const DispatchOptions& options, Deadline deadline) {
  TANDEM_ASSIGN_OR_RETURN(PendingDispatch d, PendingDispatch::Start(comm, x, dtype, hidden, routing, options));
  return d.Finish(deadline);
}

absl::StatusOr<std::vector<char>> DispatchCached(Communicator& comm, const Handle& h, const void* x, DataType dtype,
                                                 Deadline deadline) {
  TANDEM_ASSIGN_OR_RETURN(PendingRows p, PendingRows::StartDispatchCached(comm, h, x, dtype));
  return p.Finish(deadline);
}

absl::StatusOr<std::vector<char>> Combine(Communicator& comm, const Handle& h, const void* rows, DataType dtype,
                                          Deadline deadline) {
  TANDEM_ASSIGN_OR_RETURN(PendingRows p, PendingRows::StartCombine(comm, h, rows, dtype));
  return p.Finish(deadline);
}

}  // namespace tandem::comm::moe
