#include "model/expert_parallel.h"

#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/deadline.h"
#include "base/status_macros.h"
#include "comm/moe/dispatch.h"
#include "model/checkpoint.h"

namespace tandem::model {
namespace {

using comm::DataType;

EpLayout MakeLayout(const balance::Placement& p, int layer, int ranks, int rank, absl::Duration timeout) {
  EpLayout lp;
  lp.ranks = ranks;
  lp.rank = rank;
  lp.num_slots = p.num_replicas;
  lp.per_rank = p.num_replicas / ranks;
  lp.timeout = timeout;
  lp.phy2log.assign(p.phy2log.begin() + int64_t{layer} * p.num_replicas,
                    p.phy2log.begin() + int64_t{layer + 1} * p.num_replicas);
  lp.replicas.resize(p.num_experts);
  for (int e = 0; e < p.num_experts; ++e) {
    for (int c = 0; c < p.count_of(layer, e); ++c) {
      lp.replicas[e].push_back(p.log2phy[(int64_t{layer} * p.num_experts + e) * p.max_count + c]);
    }
  }
  return lp;
}

// A comm::moe dispatch in flight, giving the layer's Rows.
class Dispatching : public TokenExchange::PendingDispatch {
 public:
  Dispatching(comm::moe::PendingDispatch d, int hidden, absl::Duration timeout)
      : d_(std::move(d)), hidden_(hidden), timeout_(timeout) {}

  absl::Status PostRows() override { return d_.PostRows(Deadline::In(timeout_)); }

  absl::StatusOr<TokenExchange::Rows> Finish() override {
    TANDEM_ASSIGN_OR_RETURN(comm::moe::Dispatched d, d_.Finish(Deadline::In(timeout_)));
    TokenExchange::Rows rows;
    rows.x = Tensor::Zeros({d.num_rows, hidden_});
    if (!d.x.empty()) std::memcpy(rows.x.raw(), d.x.data(), d.x.size());
    rows.local_slot = std::move(d.local_expert);
    rows.weights = std::move(d.weights);
    rows.handle = std::make_shared<comm::moe::Handle>(std::move(d.handle));
    return rows;
  }

 private:
  comm::moe::PendingDispatch d_;
  int hidden_;
  absl::Duration timeout_;
};

// A comm::moe row exchange in flight, giving [rows, width] values.
class Exchanging : public TokenExchange::Pending {
 public:
  Exchanging(comm::moe::PendingRows p, std::unique_ptr<comm::moe::Handle> handle, int64_t rows, int64_t width,
             absl::Duration timeout)
      : p_(std::move(p)), handle_(std::move(handle)), rows_(rows), width_(width), timeout_(timeout) {}

  absl::StatusOr<Tensor> Finish() override {
    TANDEM_ASSIGN_OR_RETURN(std::vector<char> out, p_.Finish(Deadline::In(timeout_)));
    Tensor y = Tensor::Zeros({rows_, width_});
    if (!out.empty()) std::memcpy(y.raw(), out.data(), out.size());
    return y;
  }

 private:
  comm::moe::PendingRows p_;
  std::unique_ptr<comm::moe::Handle> handle_;  // combine: the handle with the row width
  int64_t rows_, width_;
  absl::Duration timeout_;
};

// TokenExchange over comm::moe with physical slots as dispatch "experts".
class EpExchange : public TokenExchange {
 public:
  EpExchange(comm::Communicator* comm, EpLayout layout, int hidden)
      : comm_(comm), layout_(std::move(layout)), hidden_(hidden) {}

  const EpLayout& layout() const { return layout_; }

  absl::StatusOr<std::unique_ptr<PendingDispatch>> StartDispatch(const Tensor& x, absl::Span<const int32_t> idx,
                                                                 const Tensor& weights) override {
    const int64_t t = x.dim(0);
    const int k = static_cast<int>(weights.dim(1));
    const std::vector<int64_t> slots = layout_.SlotsOf(idx, k);
    comm::moe::Routing routing;
    routing.num_tokens = static_cast<int>(t);
    routing.top_k = k;
    routing.num_experts = layout_.num_slots;
    routing.topk_idx = slots;
    routing.topk_weights = absl::MakeConstSpan(weights.data<float>(), weights.numel());
    TANDEM_ASSIGN_OR_RETURN(
        comm::moe::PendingDispatch d,
        comm::moe::PendingDispatch::Start(*comm_, x.data<float>(), DataType::kF32, hidden_, routing, {}));
    return std::unique_ptr<PendingDispatch>(new Dispatching(std::move(d), hidden_, layout_.timeout));
  }

  absl::StatusOr<std::unique_ptr<Pending>> StartCombine(const Rows& rows, const Tensor& values) override {
    // Combine sums rows of any width: the handle's hidden is the row width.
    auto h = std::make_unique<comm::moe::Handle>(*static_cast<const comm::moe::Handle*>(rows.handle.get()));
    h->hidden = static_cast<int>(values.dim(1));
    TANDEM_ASSIGN_OR_RETURN(comm::moe::PendingRows p,
                            comm::moe::PendingRows::StartCombine(*comm_, *h, values.data<float>(), DataType::kF32));
    const int64_t tokens = h->num_tokens;
    return std::unique_ptr<Pending>(new Exchanging(std::move(p), std::move(h), tokens, values.dim(1), layout_.timeout));
  }

  absl::StatusOr<std::unique_ptr<Pending>> StartDispatchAgain(const Rows& rows, const Tensor& values) override {
    const auto& h = *static_cast<const comm::moe::Handle*>(rows.handle.get());
    TANDEM_ASSIGN_OR_RETURN(comm::moe::PendingRows p, comm::moe::PendingRows::StartDispatchCached(
                                                          *comm_, h, values.data<float>(), DataType::kF32));
    return std::unique_ptr<Pending>(
        new Exchanging(std::move(p), nullptr, rows.x.dim(0), values.dim(1), layout_.timeout));
  }

  absl::Status SumCounts(absl::Span<int64_t> counts) override {
    return comm::PostAndWait(
        comm_->AllReduce(counts.data(), counts.data(), counts.size(), DataType::kI64, comm::ReduceOp::kSum),
        Deadline::In(layout_.timeout));
  }

 private:
  comm::Communicator* comm_;
  EpLayout layout_;
  int hidden_;
};

// An expert as floats: per parameter its value, then optimizer slots 0 and
// 1 (zeros when empty, which both optimizers treat as a fresh state).
int64_t PackedSize(SwiGlu& e) {
  int64_t n = 0;
  for (Parameter* p : e.parameters()) n += 3 * p->value.numel();
  return n;
}

void Pack(SwiGlu& e, float* out) {
  for (Parameter* p : e.parameters()) {
    const int64_t n = p->value.numel();
    std::memcpy(out, p->value.raw(), n * 4);
    for (int s = 0; s < 2; ++s) {
      if (p->state[s].empty()) {
        std::memset(out + (s + 1) * n, 0, n * 4);
      } else {
        std::memcpy(out + (s + 1) * n, p->state[s].data(), n * 4);
      }
    }
    out += 3 * n;
  }
}

void Unpack(const float* in, SwiGlu& e) {
  for (Parameter* p : e.parameters()) {
    const int64_t n = p->value.numel();
    std::memcpy(p->value.raw(), in, n * 4);
    for (int s = 0; s < 2; ++s) p->state[s].assign(in + (s + 1) * n, in + (s + 2) * n);
    p->grad.SetZero();
    in += 3 * n;
  }
}

std::unique_ptr<SwiGlu> CloneExpert(MoeLayer& layer, int e, SwiGlu& from) {
  std::unique_ptr<SwiGlu> out = layer.MakeExpert(e);
  std::vector<float> buf(PackedSize(from));
  Pack(from, buf.data());
  Unpack(buf.data(), *out);
  return out;
}

absl::Status CheckPlacement(Model& model, comm::Communicator& comm, const balance::Placement& p) {
  const int layers = static_cast<int>(model.moe_layers().size());
  if (p.num_layers != layers || p.num_experts != model.config().num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("placement: expected ", layers, " layers x ", model.config().num_experts,
                     " experts (the model's MoE layers), got ", p.num_layers, " x ", p.num_experts));
  }
  return balance::ValidatePlacement(p, comm.size());
}

EpExchange* ExchangeOf(const MoeLayer& layer) { return dynamic_cast<EpExchange*>(layer.exchange()); }

}  // namespace

std::vector<int64_t> EpLayout::SlotsOf(absl::Span<const int32_t> idx, int top_k) const {
  std::vector<int64_t> slots(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) {
    const std::vector<int64_t>& r = replicas[idx[i]];
    slots[i] = r[static_cast<int64_t>(i / top_k) % static_cast<int64_t>(r.size())];
  }
  return slots;
}

int EpLayout::local_slot_of(int q, int e) const {
  for (int j = 0; j < per_rank; ++j) {
    if (phy2log[q * per_rank + j] == e) return j;
  }
  return -1;
}

const EpLayout* EpLayoutOf(const MoeLayer& layer) {
  const EpExchange* ex = ExchangeOf(layer);
  return ex == nullptr ? nullptr : &ex->layout();
}

absl::Status DistributeExperts(Model& model, comm::Communicator& comm, const balance::Placement& placement,
                               const EpOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckPlacement(model, comm, placement));
  std::vector<MoeLayer*> layers = model.moe_layers();
  for (MoeLayer* layer : layers) {
    if (layer->exchange() != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(layer->name(), ": experts already distributed"));
    }
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    MoeLayer& layer = *layers[l];
    EpLayout lp = MakeLayout(placement, static_cast<int>(l), comm.size(), comm.rank(), options.timeout);
    std::vector<int> slot_expert;
    std::vector<std::unique_ptr<SwiGlu>> experts;
    for (int j = 0; j < lp.per_rank; ++j) {
      const int e = static_cast<int>(lp.phy2log[comm.rank() * lp.per_rank + j]);
      slot_expert.push_back(e);
      experts.push_back(CloneExpert(layer, e, layer.expert(e)));
    }
    layer.SetExperts(std::move(slot_expert), std::move(experts),
                     std::make_shared<EpExchange>(&comm, std::move(lp), model.config().hidden));
  }
  return absl::OkStatus();
}

absl::Status ApplyPlacement(Model& model, comm::Communicator& comm, const balance::Placement& placement,
                            const EpOptions& options) {
  TANDEM_RETURN_IF_ERROR(CheckPlacement(model, comm, placement));
  std::vector<MoeLayer*> layers = model.moe_layers();
  const int me = comm.rank();
  for (size_t l = 0; l < layers.size(); ++l) {
    MoeLayer& layer = *layers[l];
    EpExchange* old_ex = ExchangeOf(layer);
    if (old_ex == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(layer.name(), ": experts not distributed (call DistributeExperts first)"));
    }
    const EpLayout old = old_ex->layout();
    EpLayout next = MakeLayout(placement, static_cast<int>(l), comm.size(), me, options.timeout);
    const int64_t packed = PackedSize(layer.expert(0));
    std::vector<comm::P2POp> ops;
    // Receives, in order of my new slots.
    std::vector<std::vector<float>> inbox(next.per_rank);
    for (int j = 0; j < next.per_rank; ++j) {
      const int e = static_cast<int>(next.phy2log[me * next.per_rank + j]);
      if (old.local_slot_of(me, e) >= 0) continue;
      inbox[j].resize(packed);
      ops.push_back(comm::P2POp::Recv(old.owner(e), inbox[j].data(), packed, DataType::kF32));
    }
    // Sends, per destination in order of its new slots.
    std::vector<std::vector<float>> outbox;
    for (int q = 0; q < comm.size(); ++q) {
      if (q == me) continue;
      for (int j = 0; j < next.per_rank; ++j) {
        const int e = static_cast<int>(next.phy2log[q * next.per_rank + j]);
        if (old.local_slot_of(q, e) >= 0 || old.owner(e) != me) continue;
        outbox.emplace_back(packed);
        Pack(layer.expert(old.local_slot_of(me, e)), outbox.back().data());
      }
    }
    size_t sent = 0;
    for (int q = 0; q < comm.size(); ++q) {
      if (q == me) continue;
      for (int j = 0; j < next.per_rank; ++j) {
        const int e = static_cast<int>(next.phy2log[q * next.per_rank + j]);
        if (old.local_slot_of(q, e) >= 0 || old.owner(e) != me) continue;
        ops.push_back(comm::P2POp::Send(q, outbox[sent++].data(), packed, DataType::kF32));
      }
    }
    if (!ops.empty()) {
      TANDEM_RETURN_IF_ERROR(comm::PostAndWait(comm.SendRecv(ops), Deadline::In(options.timeout)));
    }
    std::vector<int> slot_expert;
    std::vector<std::unique_ptr<SwiGlu>> experts;
    for (int j = 0; j < next.per_rank; ++j) {
      const int e = static_cast<int>(next.phy2log[me * next.per_rank + j]);
      slot_expert.push_back(e);
      const int local = old.local_slot_of(me, e);
      if (local >= 0) {
        experts.push_back(CloneExpert(layer, e, layer.expert(local)));
      } else {
        experts.push_back(layer.MakeExpert(e));
        Unpack(inbox[j].data(), *experts.back());
      }
    }
    layer.SetExperts(std::move(slot_expert), std::move(experts),
                     std::make_shared<EpExchange>(&comm, std::move(next), model.config().hidden));
  }
  return absl::OkStatus();
}

absl::Status SyncGradients(Model& model, comm::Communicator& comm, const EpOptions& options) {
  // Replicated parameters: one flat all-reduce.
  std::vector<Parameter*> dense = model.ReplicatedParameters();
  int64_t total = 0;
  for (Parameter* p : dense) total += p->grad.numel();
  std::vector<float> flat(total);
  int64_t at = 0;
  for (Parameter* p : dense) {
    std::memcpy(flat.data() + at, p->grad.raw(), p->grad.bytes());
    at += p->grad.numel();
  }
  TANDEM_RETURN_IF_ERROR(
      comm::PostAndWait(comm.AllReduce(flat.data(), flat.data(), total, DataType::kF32, comm::ReduceOp::kSum),
                        Deadline::In(options.timeout)));
  at = 0;
  for (Parameter* p : dense) {
    std::memcpy(p->grad.raw(), flat.data() + at, p->grad.bytes());
    at += p->grad.numel();
  }
  // Experts with several replicas: one block per such expert.
  for (MoeLayer* layer : model.moe_layers()) {
    EpExchange* ex = ExchangeOf(*layer);
    if (ex == nullptr) continue;
    const EpLayout& lp = ex->layout();
    std::map<int, int64_t> block;  // logical expert -> block index
    for (size_t e = 0; e < lp.replicas.size(); ++e) {
      if (lp.replicas[e].size() > 1) block.emplace(static_cast<int>(e), static_cast<int64_t>(block.size()));
    }
    if (block.empty()) continue;
    int64_t size = 0;
    for (Parameter* p : layer->expert(0).parameters()) size += p->grad.numel();
    std::vector<float> buf(block.size() * size, 0.0f);
    const std::vector<int>& slots = layer->slot_expert();
    for (size_t j = 0; j < slots.size(); ++j) {
      auto it = block.find(slots[j]);
      if (it == block.end()) continue;
      float* dst = buf.data() + it->second * size;
      for (Parameter* p : layer->expert(static_cast<int>(j)).parameters()) {
        const float* g = p->grad.data<float>();
        for (int64_t i = 0; i < p->grad.numel(); ++i) dst[i] += g[i];
        dst += p->grad.numel();
      }
    }
    TANDEM_RETURN_IF_ERROR(
        comm::PostAndWait(comm.AllReduce(buf.data(), buf.data(), buf.size(), DataType::kF32, comm::ReduceOp::kSum),
                          Deadline::In(options.timeout)));
    for (size_t j = 0; j < slots.size(); ++j) {
      auto it = block.find(slots[j]);
      if (it == block.end()) continue;
      const float* src = buf.data() + it->second * size;
      for (Parameter* p : layer->expert(static_cast<int>(j)).parameters()) {
        std::memcpy(p->grad.raw(), src, p->grad.bytes());
        src += p->grad.numel();
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SaveCheckpointEp(Model& model, const Optimizer* optimizer, comm::Communicator& comm,
                              const std::string& path, const EpOptions& options) {
  const int me = comm.rank();
  std::vector<MoeLayer*> layers = model.moe_layers();
  // Every logical expert from its owner (first replica) to rank 0, in
  // (layer, expert) order.
  std::vector<std::vector<float>> packs;
  std::vector<std::pair<int, int>> keys;  // (layer, expert) of packs on rank 0
  std::vector<comm::P2POp> ops;
  for (size_t l = 0; l < layers.size(); ++l) {
    MoeLayer& layer = *layers[l];
    EpExchange* ex = ExchangeOf(layer);
    if (ex == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(layer.name(), ": experts not distributed"));
    }
    const EpLayout& lp = ex->layout();
    const int64_t packed = PackedSize(layer.expert(0));
    for (int e = 0; e < model.config().num_experts; ++e) {
      const int owner = lp.owner(e);
      if (owner != me && me != 0) continue;
      packs.emplace_back(packed);
      if (owner == me) Pack(layer.expert(lp.local_slot_of(me, e)), packs.back().data());
      if (me == 0) keys.emplace_back(static_cast<int>(l), e);
      if (owner == me && me != 0) ops.push_back(comm::P2POp::Send(0, packs.back().data(), packed, DataType::kF32));
      if (owner != me && me == 0) ops.push_back(comm::P2POp::Recv(owner, packs.back().data(), packed, DataType::kF32));
    }
  }
  if (!ops.empty()) {
    TANDEM_RETURN_IF_ERROR(comm::PostAndWait(comm.SendRecv(ops), Deadline::In(options.timeout)));
  }
  int32_t code = 0;
  std::string message;
  if (me == 0) {
    NamedTensors state;
    std::vector<Parameter*> dense = model.ReplicatedParameters();
    std::vector<std::unique_ptr<SwiGlu>> experts;
    std::vector<Parameter*> expert_params;
    for (size_t i = 0; i < keys.size(); ++i) {
      experts.push_back(layers[keys[i].first]->MakeExpert(keys[i].second));
      Unpack(packs[i].data(), *experts.back());
      for (Parameter* p : experts.back()->parameters()) expert_params.push_back(p);
    }
    std::vector<Parameter*> all = dense;
    all.insert(all.end(), expert_params.begin(), expert_params.end());
    for (Parameter* p : all) state.emplace_back(p->name, p->value);
    for (MoeLayer* m : layers) state.emplace_back(m->router().bias_name(), m->router().bias());
    if (optimizer != nullptr) {
      for (int s = 0; s < optimizer->num_state_slots(); ++s) {
        for (Parameter* p : all) {
          Tensor t = Tensor::Zeros(p->value.shape());
          if (!p->state[s].empty()) std::memcpy(t.raw(), p->state[s].data(), t.bytes());
          state.emplace_back(absl::StrCat("optim.", optimizer->state_name(s), ".", p->name), t);
        }
      }
    }
    absl::Status s = WriteSafetensors(path, state, CheckpointMetadata(model, optimizer));
    code = static_cast<int32_t>(s.code());
    message = std::string(s.message());
    if (!s.ok()) {
      (void)comm::PostAndWait(comm.Broadcast(&code, 1, DataType::kI32, 0), Deadline::In(options.timeout));
      return s;
    }
  }
  TANDEM_RETURN_IF_ERROR(comm::PostAndWait(comm.Broadcast(&code, 1, DataType::kI32, 0), Deadline::In(options.timeout)));
  if (code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat(path, ": save failed on rank 0"));
  }
  return absl::OkStatus();
}

absl::Status LoadCheckpointEp(Model& model, Optimizer* optimizer, const std::string& path) {
  return LoadCheckpoint(model, optimizer, path);
}

}  // namespace tandem::model
