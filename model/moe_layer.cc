#include "model/moe_layer.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/internal/cpu_gemm.h"

namespace tandem::model {
namespace {

// For each row entry (row * top_k + k), its position in its slot's work
// list; -1 when the entry is not served here.
std::vector<int32_t> EntryPositions(const std::vector<MoeLayer::Saved::Work>& work, size_t entries) {
  std::vector<int32_t> pos(entries, -1);
  for (const MoeLayer::Saved::Work& w : work) {
    for (size_t i = 0; i < w.entries.size(); ++i) {
      pos[w.entries[i]] = static_cast<int32_t>(i);
    }
  }
  return pos;
}

}  // namespace

MoeLayer::MoeLayer(const std::string& name, const ModelConfig& config, int moe_index)
    : name_(name),
      config_(config),
      moe_index_(moe_index),
      router_(name + ".gate", config),
      counts_(config.num_experts, 0) {
  if (config.num_shared_experts > 0) {
    shared_ = std::make_unique<SwiGlu>(name + ".shared", config.hidden,
                                       int64_t{config.num_shared_experts} * config.moe_inter);
  }
  for (int e = 0; e < config.num_experts; ++e) {
    slot_expert_.push_back(e);
    experts_.push_back(std::make_unique<SwiGlu>(absl::StrCat(name, ".experts.", e), config.hidden, config.moe_inter));
  }
}

void MoeLayer::Init() {
  router_.Init(config_.seed, config_.init_scale);
  if (shared_ != nullptr) shared_->Init(config_.seed, config_.init_scale);
  for (auto& e : experts_) e->Init(config_.seed, config_.init_scale);
}

std::unique_ptr<SwiGlu> MoeLayer::MakeExpert(int e) const {
  auto expert = std::make_unique<SwiGlu>(absl::StrCat(name_, ".experts.", e), config_.hidden, config_.moe_inter);
  expert->Init(config_.seed, config_.init_scale);
  return expert;
}

void MoeLayer::SetExperts(std::vector<int> slot_expert, std::vector<std::unique_ptr<SwiGlu>> experts,
                          std::shared_ptr<TokenExchange> exchange) {
  slot_expert_ = std::move(slot_expert);
  experts_ = std::move(experts);
  exchange_ = std::move(exchange);
}

std::vector<Parameter*> MoeLayer::dense_parameters() {
  std::vector<Parameter*> out = {&router_.weight()};
  if (shared_ != nullptr) {
    for (Parameter* p : shared_->parameters()) out.push_back(p);
  }
  return out;
}

std::vector<Parameter*> MoeLayer::expert_parameters() {
  std::vector<Parameter*> out;
  for (auto& e : experts_) {
    for (Parameter* p : e->parameters()) out.push_back(p);
  }
  return out;
}

absl::Status MoeLayer::CountRouted(absl::Span<const int32_t> idx) {
  uint64_t fp = 0xcbf29ce484222325ULL;
  for (int32_t e : idx) {
    ++counts_[e];
    fp = (fp ^ static_cast<uint32_t>(e)) * 0x100000001b3ULL;
  }
  routing_fingerprint_ = fp;
  if (recorder_ != nullptr) return recorder_->RecordRouted(moe_index_, idx);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> MoeLayer::Forward(const Tensor& x, Saved* saved) {
  if (x.rank() != 2 || x.dim(1) != config_.hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": input: expected shape [T, ", config_.hidden, "], got ", ShapeString(x.shape())));
  }
  Saved local;
  Saved& s = saved != nullptr ? *saved : local;
  const int k = config_.top_k;
  const int64_t h = config_.hidden;
  TANDEM_ASSIGN_OR_RETURN(Router::Output route, router_.Forward(x, &s.router));
  TANDEM_RETURN_IF_ERROR(CountRouted(route.idx));
  s.weights = route.weights;
  Tensor shared_out;
  if (shared_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(shared_out, shared_->Forward(x, &s.shared));
  }
  if (exchange_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(s.rows, exchange_->Dispatch(x, route.idx, route.weights));
  } else {
    s.rows.x = x;
    s.rows.local_slot = route.idx;
    s.rows.weights.assign(route.weights.data<float>(), route.weights.data<float>() + route.weights.numel());
  }
  const int64_t rows = s.rows.x.dim(0);
  const size_t entries = s.rows.local_slot.size();
  if (entries != static_cast<size_t>(rows * k) || s.rows.weights.size() != entries) {
    return absl::InternalError(absl::StrCat(name_, ": dispatch: expected ", rows * k, " slot entries, got ", entries));
  }
  s.work.assign(experts_.size(), {});
  for (size_t i = 0; i < entries; ++i) {
    const int32_t slot = s.rows.local_slot[i];
    if (slot < 0) continue;
    if (slot >= static_cast<int32_t>(experts_.size())) {
      return absl::InternalError(
          absl::StrCat(name_, ": dispatch: local slot ", slot, " out of range [0, ", experts_.size(), ")"));
    }
    s.work[slot].entries.push_back(static_cast<int64_t>(i));
  }
  for (size_t slot = 0; slot < experts_.size(); ++slot) {
    Saved::Work& w = s.work[slot];
    if (w.entries.empty()) continue;
    const int64_t n = static_cast<int64_t>(w.entries.size());
    Tensor xin = Tensor::Zeros({n, h});
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(xin.data<float>() + i * h, s.rows.x.data<float>() + (w.entries[i] / k) * h, h * 4);
    }
    TANDEM_ASSIGN_OR_RETURN(w.out, experts_[slot]->Forward(xin, &w.saved));
  }
  // Per row, the weighted outputs of its local experts in top-k order.
  const std::vector<int32_t> pos = EntryPositions(s.work, entries);
  Tensor yrows = Tensor::Zeros({rows, h});
  for (int64_t r = 0; r < rows; ++r) {
    float* y = yrows.data<float>() + r * h;
    for (int j = 0; j < k; ++j) {
      const size_t entry = r * k + j;
      const int32_t slot = s.rows.local_slot[entry];
      if (slot < 0) continue;
      const float wgt = s.rows.weights[entry];
      const float* o = s.work[slot].out.data<float>() + pos[entry] * h;
      for (int64_t c = 0; c < h; ++c) y[c] += wgt * o[c];
    }
  }
  Tensor routed = yrows;
  if (exchange_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(routed, exchange_->Combine(s.rows, yrows));
  }
  if (shared_ != nullptr) AddTo(routed, shared_out);
  return routed;
}

absl::StatusOr<Tensor> MoeLayer::Backward(const Saved& s, const Tensor& dy, WeightGradStore* store) {
  const int64_t t = s.weights.dim(0);
  const int k = config_.top_k;
  const int64_t h = config_.hidden;
  TANDEM_RETURN_IF_ERROR(dy.CheckShape(absl::StrCat(name_, ": output gradient"), {t, h}));
  Tensor dx_shared;
  if (shared_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(dx_shared, shared_->Backward(s.shared, dy, store));
  }
  Tensor drows = dy;
  if (exchange_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(drows, exchange_->DispatchAgain(s.rows, dy));
  }
  const int64_t rows = s.rows.x.dim(0);
  const size_t entries = s.rows.local_slot.size();
  Tensor dw_rows = Tensor::Zeros({rows, k});
  std::vector<Tensor> dx_slot(experts_.size());
  for (size_t slot = 0; slot < experts_.size(); ++slot) {
    const Saved::Work& w = s.work[slot];
    if (w.entries.empty()) continue;
    const int64_t n = static_cast<int64_t>(w.entries.size());
    Tensor dout = Tensor::Zeros({n, h});
    for (int64_t i = 0; i < n; ++i) {
      const int64_t entry = w.entries[i];
      const float* g = drows.data<float>() + (entry / k) * h;
      const float wgt = s.rows.weights[entry];
      float* d = dout.data<float>() + i * h;
      for (int64_t c = 0; c < h; ++c) d[c] = wgt * g[c];
      dw_rows.data<float>()[entry] = internal::Dot(g, w.out.data<float>() + i * h, h);
    }
    TANDEM_ASSIGN_OR_RETURN(dx_slot[slot], experts_[slot]->Backward(w.saved, dout, store));
  }
  const std::vector<int32_t> pos = EntryPositions(s.work, entries);
  Tensor dx_rows = Tensor::Zeros({rows, h});
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dx_rows.data<float>() + r * h;
    for (int j = 0; j < k; ++j) {
      const size_t entry = r * k + j;
      const int32_t slot = s.rows.local_slot[entry];
      if (slot < 0) continue;
      const float* g = dx_slot[slot].data<float>() + pos[entry] * h;
      for (int64_t c = 0; c < h; ++c) d[c] += g[c];
    }
  }
  Tensor dx = dx_rows;
  Tensor dweights = dw_rows;
  if (exchange_ != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(dx, exchange_->Combine(s.rows, dx_rows));
    TANDEM_ASSIGN_OR_RETURN(dweights, exchange_->Combine(s.rows, dw_rows));
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dx_router, router_.Backward(s.router, dweights, store));
  if (shared_ != nullptr) AddTo(dx, dx_shared);
  AddTo(dx, dx_router);
  return dx;
}

absl::Status MoeLayer::UpdateBias() {
  std::vector<int64_t> counts = counts_;
  if (exchange_ != nullptr) {
    TANDEM_RETURN_IF_ERROR(exchange_->SumCounts(absl::MakeSpan(counts)));
  }
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  const int64_t e = config_.num_experts;
  float* b = router_.bias().data<float>();
  for (int64_t i = 0; i < e; ++i) {
    // sign(mean - c_i) = sign(total - E * c_i), exact in integers.
    const int64_t diff = total - e * counts[i];
    if (diff > 0) b[i] += config_.bias_update_speed;
    if (diff < 0) b[i] -= config_.bias_update_speed;
  }
  std::fill(counts_.begin(), counts_.end(), 0);
  return absl::OkStatus();
}

}  // namespace tandem::model
