#include "model/moe_layer.h"

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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

absl::StatusOr<Tensor> MoeLayer::ExpertsForward(Saved& s) {
  const int k = config_.top_k;
  const int64_t h = config_.hidden;
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
  return yrows;
}

absl::StatusOr<std::pair<Tensor, Tensor>> MoeLayer::ExpertsBackward(const Saved& s, const Tensor& drows,
                                                                    WeightGradStore* store) {
  const int k = config_.top_k;
  const int64_t h = config_.hidden;
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
  return std::make_pair(dx_rows, dw_rows);
}

namespace {

using Kind = comm::PhaseEvent::Kind;

// Trace labels of one layer: "L<moe index> <what>".
class Marks {
 public:
  Marks(comm::PhaseTrace* trace, int layer) : trace_(trace), prefix_(absl::StrCat("L", layer, " ")) {}
  void operator()(Kind kind, absl::string_view what) const {
    if (trace_ != nullptr) trace_->Record(kind, absl::StrCat(prefix_, what));
  }

 private:
  comm::PhaseTrace* trace_;
  std::string prefix_;
};

}  // namespace

// The forward: route, post the count exchange; post the rows and compute
// the shared expert while they travel; the experts on the rows that
// arrived, post the combine; add the shared expert's output.
class MoeLayer::ForwardPass : public comm::PhasedTask {
 public:
  ForwardPass(MoeLayer* layer, Tensor x, Saved* saved, Tensor* out, const comm::PhaseOptions& o)
      : l_(layer), x_(std::move(x)), s_(saved), out_(out), o_(o), mark_(o.trace, layer->moe_index_) {}

  // Each step runs until it needs an exchange it posted, and returns there
  // (overlap); without overlap every exchange is waited for at once.
  absl::StatusOr<bool> Step() override {
    switch (phase_) {
      case 0: {
        TANDEM_RETURN_IF_ERROR(Route());
        if (l_->exchange_ == nullptr) return Local();
        TANDEM_ASSIGN_OR_RETURN(dispatch_, l_->exchange_->StartDispatch(x_, route_.idx, route_.weights));
        mark_(Kind::kPost, "dispatch counts");
        phase_ = 1;
        if (o_.overlap) return false;
        [[fallthrough]];
      }
      case 1: {
        TANDEM_RETURN_IF_ERROR(PostRows());
        if (!o_.overlap) TANDEM_RETURN_IF_ERROR(FinishDispatch());
        TANDEM_RETURN_IF_ERROR(Shared());  // while the rows travel
        phase_ = 2;
        if (o_.overlap) return false;
        [[fallthrough]];
      }
      case 2: {
        if (o_.overlap) TANDEM_RETURN_IF_ERROR(FinishDispatch());
        mark_(Kind::kComputeBegin, "experts");
        TANDEM_ASSIGN_OR_RETURN(yrows_, l_->ExpertsForward(*s_));
        mark_(Kind::kComputeEnd, "experts");
        TANDEM_ASSIGN_OR_RETURN(combine_, l_->exchange_->StartCombine(s_->rows, yrows_));
        mark_(Kind::kPost, "combine");
        phase_ = 3;
        if (o_.overlap) return false;
        [[fallthrough]];
      }
      default: {
        mark_(Kind::kWaitBegin, "combine");
        TANDEM_ASSIGN_OR_RETURN(Tensor routed, combine_->Finish());
        mark_(Kind::kWaitEnd, "combine");
        if (l_->shared_ != nullptr) AddTo(routed, shared_out_);
        *out_ = routed;
        return true;
      }
    }
  }

 private:
  absl::Status Route() {
    if (x_.rank() != 2 || x_.dim(1) != l_->config_.hidden) {
      return absl::InvalidArgumentError(absl::StrCat(l_->name_, ": input: expected shape [T, ", l_->config_.hidden,
                                                     "], got ", ShapeString(x_.shape())));
    }
    mark_(Kind::kComputeBegin, "router");
    TANDEM_ASSIGN_OR_RETURN(route_, l_->router_.Forward(x_, &s_->router));
    TANDEM_RETURN_IF_ERROR(l_->CountRouted(route_.idx));
    s_->weights = route_.weights;
    mark_(Kind::kComputeEnd, "router");
    return absl::OkStatus();
  }

  absl::Status Shared() {
    if (l_->shared_ == nullptr) return absl::OkStatus();
    mark_(Kind::kComputeBegin, "shared");
    TANDEM_ASSIGN_OR_RETURN(shared_out_, l_->shared_->Forward(x_, &s_->shared));
    mark_(Kind::kComputeEnd, "shared");
    return absl::OkStatus();
  }

  absl::Status PostRows() {
    mark_(Kind::kWaitBegin, "dispatch counts");
    TANDEM_RETURN_IF_ERROR(dispatch_->PostRows());
    mark_(Kind::kWaitEnd, "dispatch counts");
    mark_(Kind::kPost, "dispatch");
    return absl::OkStatus();
  }

  absl::Status FinishDispatch() {
    mark_(Kind::kWaitBegin, "dispatch");
    TANDEM_ASSIGN_OR_RETURN(s_->rows, dispatch_->Finish());
    mark_(Kind::kWaitEnd, "dispatch");
    dispatch_.reset();
    return absl::OkStatus();
  }

  // Every expert here: no exchange.
  absl::StatusOr<bool> Local() {
    TANDEM_RETURN_IF_ERROR(Shared());
    s_->rows.x = x_;
    s_->rows.local_slot = route_.idx;
    s_->rows.weights.assign(route_.weights.data<float>(), route_.weights.data<float>() + route_.weights.numel());
    TANDEM_ASSIGN_OR_RETURN(Tensor routed, l_->ExpertsForward(*s_));
    if (l_->shared_ != nullptr) AddTo(routed, shared_out_);
    *out_ = routed;
    return true;
  }

  MoeLayer* l_;
  Tensor x_;
  Saved* s_;
  Tensor* out_;
  const comm::PhaseOptions o_;
  const Marks mark_;
  int phase_ = 0;
  Router::Output route_;
  Tensor shared_out_, yrows_;
  std::unique_ptr<TokenExchange::PendingDispatch> dispatch_;
  std::unique_ptr<TokenExchange::Pending> combine_;
};

// The backward: post dy to the rows; the shared expert while it travels;
// the experts' input gradients, post their combine (with the gate-weight
// gradients, one exchange); the experts' weight gradients while it travels;
// the router; dx = (routed + shared) + router.
class MoeLayer::BackwardPass : public comm::PhasedTask {
 public:
  BackwardPass(MoeLayer* layer, const Saved& saved, Tensor dy, WeightGradStore* store, Tensor* out,
               const comm::PhaseOptions& o)
      : l_(layer), s_(saved), dy_(std::move(dy)), store_(store), out_(out), o_(o), mark_(o.trace, layer->moe_index_) {}

  absl::StatusOr<bool> Step() override {
    const int64_t h = l_->config_.hidden;
    const int k = l_->config_.top_k;
    switch (phase_) {
      case 0: {
        const int64_t t = s_.weights.dim(0);
        TANDEM_RETURN_IF_ERROR(dy_.CheckShape(absl::StrCat(l_->name_, ": output gradient"), {t, h}));
        if (l_->exchange_ == nullptr) return Local();
        TANDEM_ASSIGN_OR_RETURN(pending_, l_->exchange_->StartDispatchAgain(s_.rows, dy_));
        mark_(Kind::kPost, "dispatch dy");
        if (!o_.overlap) TANDEM_RETURN_IF_ERROR(Receive("dispatch dy", &drows_));
        TANDEM_RETURN_IF_ERROR(Shared());  // while dy travels
        phase_ = 1;
        if (o_.overlap) return false;
        [[fallthrough]];
      }
      case 1: {
        if (o_.overlap) TANDEM_RETURN_IF_ERROR(Receive("dispatch dy", &drows_));
        // Weight gradients wait in `later_` unless the caller defers them.
        mark_(Kind::kComputeBegin, "experts");
        TANDEM_ASSIGN_OR_RETURN(auto grads, l_->ExpertsBackward(s_, drows_, store_ != nullptr ? store_ : &later_));
        if (store_ == nullptr) later_.Flush();
        // dx rows and gate-weight gradients travel as one [R, H + top_k].
        const int64_t rows = grads.first.dim(0);
        merged_ = Tensor::Zeros({rows, h + k});
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(merged_.data<float>() + r * (h + k), grads.first.data<float>() + r * h, h * 4);
          std::memcpy(merged_.data<float>() + r * (h + k) + h, grads.second.data<float>() + r * k, k * 4);
        }
        mark_(Kind::kComputeEnd, "experts");
        TANDEM_ASSIGN_OR_RETURN(pending_, l_->exchange_->StartCombine(s_.rows, merged_));
        mark_(Kind::kPost, "combine dx");
        if (!o_.overlap) TANDEM_RETURN_IF_ERROR(Receive("combine dx", &combined_));
        phase_ = 2;
        // An F&B's other pass computes next, then the weight gradients: both
        // while dx travels, and the weights also hide the other pass's
        // exchange posted meanwhile (often its last, which nothing else can).
        if (o_.overlap && store_ == nullptr) return false;
        [[fallthrough]];
      }
      case 2: {
        if (store_ == nullptr) {
          mark_(Kind::kComputeBegin, "expert weights");
          TANDEM_RETURN_IF_ERROR(later_.Pop());
          mark_(Kind::kComputeEnd, "expert weights");
        }
        phase_ = 3;
        if (o_.overlap) return false;
        [[fallthrough]];
      }
      default: {
        if (o_.overlap) TANDEM_RETURN_IF_ERROR(Receive("combine dx", &combined_));
        const int64_t t = combined_.dim(0);
        Tensor dx = Tensor::Zeros({t, h}), dweights = Tensor::Zeros({t, k});
        for (int64_t i = 0; i < t; ++i) {
          std::memcpy(dx.data<float>() + i * h, combined_.data<float>() + i * (h + k), h * 4);
          std::memcpy(dweights.data<float>() + i * k, combined_.data<float>() + i * (h + k) + h, k * 4);
        }
        return Finish(dx, dweights);
      }
    }
  }

 private:
  absl::Status Receive(absl::string_view what, Tensor* into) {
    mark_(Kind::kWaitBegin, what);
    TANDEM_ASSIGN_OR_RETURN(*into, pending_->Finish());
    mark_(Kind::kWaitEnd, what);
    pending_.reset();
    return absl::OkStatus();
  }

  absl::Status Shared() {
    if (l_->shared_ == nullptr) return absl::OkStatus();
    mark_(Kind::kComputeBegin, "shared");
    TANDEM_ASSIGN_OR_RETURN(dx_shared_, l_->shared_->Backward(s_.shared, dy_, store_));
    mark_(Kind::kComputeEnd, "shared");
    return absl::OkStatus();
  }

  // The router's backward and the input gradient from the routed part.
  absl::StatusOr<bool> Finish(Tensor dx, const Tensor& dweights) {
    mark_(Kind::kComputeBegin, "router");
    TANDEM_ASSIGN_OR_RETURN(Tensor dx_router, l_->router_.Backward(s_.router, dweights, store_));
    if (l_->shared_ != nullptr) AddTo(dx, dx_shared_);
    AddTo(dx, dx_router);
    mark_(Kind::kComputeEnd, "router");
    *out_ = dx;
    return true;
  }

  // Every expert here: no exchange.
  absl::StatusOr<bool> Local() {
    TANDEM_RETURN_IF_ERROR(Shared());
    TANDEM_ASSIGN_OR_RETURN(auto grads, l_->ExpertsBackward(s_, dy_, store_));
    return Finish(grads.first, grads.second);
  }

  MoeLayer* l_;
  const Saved& s_;
  Tensor dy_;
  WeightGradStore* store_;
  Tensor* out_;
  const comm::PhaseOptions o_;
  const Marks mark_;
  int phase_ = 0;
  Tensor dx_shared_, drows_, merged_, combined_;
  WeightGradStore later_;
  std::unique_ptr<TokenExchange::Pending> pending_;
};

std::unique_ptr<comm::PhasedTask> MoeLayer::ForwardTask(Tensor x, Saved* saved, Tensor* out,
                                                        const comm::PhaseOptions& options) {
  return std::make_unique<ForwardPass>(this, std::move(x), saved, out, options);
}

std::unique_ptr<comm::PhasedTask> MoeLayer::BackwardTask(const Saved& saved, Tensor dy, WeightGradStore* store,
                                                         Tensor* out, const comm::PhaseOptions& options) {
  return std::make_unique<BackwardPass>(this, saved, std::move(dy), store, out, options);
}

absl::StatusOr<Tensor> MoeLayer::Forward(const Tensor& x, Saved* saved) {
  Saved local;
  Tensor out;
  std::unique_ptr<comm::PhasedTask> task = ForwardTask(x, saved != nullptr ? saved : &local, &out, {});
  TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*task));
  return out;
}

absl::StatusOr<Tensor> MoeLayer::Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store) {
  Tensor out;
  std::unique_ptr<comm::PhasedTask> task = BackwardTask(saved, dy, store, &out, {});
  TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*task));
  return out;
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
