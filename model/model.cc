#include "model/model.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tandem::model {

absl::StatusOr<LossResult> UnitModel::Loss(const Tensor& out, const Target& target) {
  return config().loss == LossKind::kMse ? MseLoss(out, target.values, target.normalizer)
                                         : CrossEntropyLoss(out, target.labels, target.normalizer);
}

absl::StatusOr<Tensor> UnitModel::NewActivation(std::vector<int64_t> shape) { return Tensor::Create(shape); }

std::unique_ptr<comm::PhasedTask> UnitModel::UnitForwardTask(int unit, Tensor x, std::unique_ptr<UnitState>* state,
                                                             Tensor* out, const comm::PhaseOptions& options) {
  return comm::OneStep([this, unit, x = std::move(x), state, out]() -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(*out, UnitForward(unit, x, state));
    return absl::OkStatus();
  });
}

std::unique_ptr<comm::PhasedTask> UnitModel::UnitBackwardTask(int unit, const UnitState& state, Tensor dy,
                                                              WeightGradStore* store, Tensor* out,
                                                              const comm::PhaseOptions& options) {
  return comm::OneStep([this, unit, &state, dy = std::move(dy), store, out]() -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(*out, UnitBackward(unit, state, dy, store));
    return absl::OkStatus();
  });
}

namespace {

struct LinearState : Model::UnitState {
  Linear::Saved saved;
};

struct BlockState : Model::UnitState {
  RmsNorm::Saved norm;
  SwiGlu::Saved ffn;
  MoeLayer::Saved moe;
};

struct HeadState : Model::UnitState {
  RmsNorm::Saved norm;
  Linear::Saved head;
};

// A MoE block's forward: norm, the MoE layer's phased forward, residual.
class MoeBlockForward : public comm::PhasedTask {
 public:
  MoeBlockForward(RmsNorm* norm, MoeLayer* moe, Tensor x, std::unique_ptr<Model::UnitState>* state, Tensor* out,
                  const comm::PhaseOptions& o)
      : norm_(norm), moe_(moe), x_(std::move(x)), state_(state), out_(out), o_(o), s_(new BlockState) {}

  absl::StatusOr<bool> Step() override {
    if (moe_task_ == nullptr) {
      TANDEM_ASSIGN_OR_RETURN(Tensor n, norm_->Forward(x_, &s_->norm));
      moe_task_ = moe_->ForwardTask(std::move(n), &s_->moe, &f_, o_);
    }
    TANDEM_ASSIGN_OR_RETURN(bool done, moe_task_->Step());
    if (!done) return false;
    AddTo(f_, x_);  // residual: h + F(norm(h))
    *out_ = f_;
    if (state_ != nullptr) *state_ = std::move(s_);
    return true;
  }

 private:
  RmsNorm* norm_;
  MoeLayer* moe_;
  Tensor x_, f_;
  std::unique_ptr<Model::UnitState>* state_;
  Tensor* out_;
  const comm::PhaseOptions o_;
  std::unique_ptr<BlockState> s_;
  std::unique_ptr<comm::PhasedTask> moe_task_;
};

// A MoE block's backward: the MoE layer's phased backward, norm, residual.
class MoeBlockBackward : public comm::PhasedTask {
 public:
  MoeBlockBackward(RmsNorm* norm, MoeLayer* moe, const BlockState& s, Tensor dy, WeightGradStore* store, Tensor* out,
                   const comm::PhaseOptions& o)
      : norm_(norm),
        s_(s),
        dy_(dy),
        store_(store),
        out_(out),
        task_(moe->BackwardTask(s.moe, std::move(dy), store, &dn_, o)) {}

  absl::StatusOr<bool> Step() override {
    TANDEM_ASSIGN_OR_RETURN(bool done, task_->Step());
    if (!done) return false;
    TANDEM_ASSIGN_OR_RETURN(Tensor dx, norm_->Backward(s_.norm, dn_, store_));
    AddTo(dx, dy_);  // residual
    *out_ = dx;
    return true;
  }

 private:
  RmsNorm* norm_;
  const BlockState& s_;
  Tensor dy_, dn_;
  WeightGradStore* store_;
  Tensor* out_;
  std::unique_ptr<comm::PhasedTask> task_;
};

}  // namespace

Model::Model(const ModelConfig& config)
    : config_(config),
      input_proj_("input_proj", config.input_dim, config.hidden),
      final_norm_("norm", config.hidden, config.norm_eps),
      head_("head", config.hidden, config.output_dim) {
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string prefix = absl::StrCat("layers.", i);
    Block b;
    b.norm = std::make_unique<RmsNorm>(prefix + ".norm", config.hidden, config.norm_eps);
    if (i < config.num_dense_layers) {
      b.ffn = std::make_unique<SwiGlu>(prefix + ".ffn", config.hidden, config.dense_inter);
    } else {
      b.moe = std::make_unique<MoeLayer>(prefix + ".moe", config, i - config.num_dense_layers);
    }
    blocks_.push_back(std::move(b));
  }
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelConfig& config) {
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config));
  std::unique_ptr<Model> m(new Model(config));
  m->input_proj_.Init(config.seed, config.init_scale);
  m->head_.Init(config.seed, config.init_scale);
  for (Block& b : m->blocks_) {
    if (b.ffn != nullptr) b.ffn->Init(config.seed, config.init_scale);
    if (b.moe != nullptr) b.moe->Init();
  }
  return m;
}

absl::StatusOr<Tensor> Model::UnitForward(int unit, const Tensor& x, std::unique_ptr<UnitState>* state) {
  if (unit < 0 || unit >= num_units()) {
    return absl::InvalidArgumentError(absl::StrCat("unit: expected a value in [0, ", num_units(), "), got ", unit));
  }
  if (unit == 0) {
    auto s = std::make_unique<LinearState>();
    TANDEM_ASSIGN_OR_RETURN(Tensor y, input_proj_.Forward(x, &s->saved));
    if (state != nullptr) *state = std::move(s);
    return y;
  }
  if (unit == num_units() - 1) {
    auto s = std::make_unique<HeadState>();
    TANDEM_ASSIGN_OR_RETURN(Tensor n, final_norm_.Forward(x, &s->norm));
    TANDEM_ASSIGN_OR_RETURN(Tensor y, head_.Forward(n, &s->head));
    if (state != nullptr) *state = std::move(s);
    return y;
  }
  Block& b = blocks_[unit - 1];
  auto s = std::make_unique<BlockState>();
  TANDEM_ASSIGN_OR_RETURN(Tensor n, b.norm->Forward(x, &s->norm));
  Tensor f;
  if (b.ffn != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(f, b.ffn->Forward(n, &s->ffn));
  } else {
    TANDEM_ASSIGN_OR_RETURN(f, b.moe->Forward(n, &s->moe));
  }
  AddTo(f, x);  // residual: h + F(norm(h))
  if (state != nullptr) *state = std::move(s);
  return f;
}

absl::StatusOr<Tensor> Model::UnitBackward(int unit, const UnitState& state, const Tensor& dy, WeightGradStore* store) {
  if (unit < 0 || unit >= num_units()) {
    return absl::InvalidArgumentError(absl::StrCat("unit: expected a value in [0, ", num_units(), "), got ", unit));
  }
  if (unit == 0) {
    TANDEM_ASSIGN_OR_RETURN(const LinearState* s, StateAs<LinearState>(state, unit));
    TANDEM_ASSIGN_OR_RETURN(Tensor dx, input_proj_.BackwardInput(s->saved, dy));
    input_proj_.BackwardWeight(s->saved, dy, store);
    return dx;
  }
  if (unit == num_units() - 1) {
    TANDEM_ASSIGN_OR_RETURN(const HeadState* s, StateAs<HeadState>(state, unit));
    TANDEM_ASSIGN_OR_RETURN(Tensor dn, head_.BackwardInput(s->head, dy));
    head_.BackwardWeight(s->head, dy, store);
    return final_norm_.Backward(s->norm, dn, store);
  }
  TANDEM_ASSIGN_OR_RETURN(const BlockState* s, StateAs<BlockState>(state, unit));
  Block& b = blocks_[unit - 1];
  Tensor dn;
  if (b.ffn != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(dn, b.ffn->Backward(s->ffn, dy, store));
  } else {
    TANDEM_ASSIGN_OR_RETURN(dn, b.moe->Backward(s->moe, dy, store));
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, b.norm->Backward(s->norm, dn, store));
  AddTo(dx, dy);  // residual
  return dx;
}

std::unique_ptr<comm::PhasedTask> Model::UnitForwardTask(int unit, Tensor x, std::unique_ptr<UnitState>* state,
                                                         Tensor* out, const comm::PhaseOptions& options) {
  if (unit >= 1 && unit < num_units() - 1 && blocks_[unit - 1].moe != nullptr) {
    Block& b = blocks_[unit - 1];
    return std::make_unique<MoeBlockForward>(b.norm.get(), b.moe.get(), std::move(x), state, out, options);
  }
  return UnitModel::UnitForwardTask(unit, std::move(x), state, out, options);
}

std::unique_ptr<comm::PhasedTask> Model::UnitBackwardTask(int unit, const UnitState& state, Tensor dy,
                                                          WeightGradStore* store, Tensor* out,
                                                          const comm::PhaseOptions& options) {
  if (unit >= 1 && unit < num_units() - 1 && blocks_[unit - 1].moe != nullptr) {
    const BlockState* s = dynamic_cast<const BlockState*>(&state);
    if (s != nullptr) {
      Block& b = blocks_[unit - 1];
      return std::make_unique<MoeBlockBackward>(b.norm.get(), b.moe.get(), *s, std::move(dy), store, out, options);
    }
  }
  return UnitModel::UnitBackwardTask(unit, state, std::move(dy), store, out, options);  // names a bad state
}

std::vector<Parameter*> Model::UnitParameters(int unit) {
  if (unit == 0) return {&input_proj_.weight()};
  if (unit == num_units() - 1) return {&final_norm_.weight(), &head_.weight()};
  if (unit < 0 || unit >= num_units()) return {};
  Block& b = blocks_[unit - 1];
  std::vector<Parameter*> out = {&b.norm->weight()};
  if (b.ffn != nullptr) {
    for (Parameter* p : b.ffn->parameters()) out.push_back(p);
  } else {
    for (Parameter* p : b.moe->dense_parameters()) out.push_back(p);
    for (Parameter* p : b.moe->expert_parameters()) out.push_back(p);
  }
  return out;
}

std::vector<Parameter*> Model::Parameters() {
  std::vector<Parameter*> out;
  for (int u = 0; u < num_units(); ++u) {
    for (Parameter* p : UnitParameters(u)) out.push_back(p);
  }
  return out;
}

std::vector<Parameter*> Model::ReplicatedParameters() {
  std::vector<Parameter*> out = {&input_proj_.weight()};
  for (Block& b : blocks_) {
    out.push_back(&b.norm->weight());
    if (b.ffn != nullptr) {
      for (Parameter* p : b.ffn->parameters()) out.push_back(p);
    } else {
      for (Parameter* p : b.moe->dense_parameters()) out.push_back(p);
    }
  }
  out.push_back(&final_norm_.weight());
  out.push_back(&head_.weight());
  return out;
}

std::vector<MoeLayer*> Model::moe_layers() {
  std::vector<MoeLayer*> out;
  for (Block& b : blocks_) {
    if (b.moe != nullptr) out.push_back(b.moe.get());
  }
  return out;
}

void Model::SetLoadRecorder(balance::LoadRecorder* recorder) {
  for (MoeLayer* m : moe_layers()) m->SetRecorder(recorder);
}

void Model::ZeroGrad() {
  for (Parameter* p : Parameters()) p->grad.SetZero();
}

absl::Status Model::EndStep() {
  for (MoeLayer* m : moe_layers()) TANDEM_RETURN_IF_ERROR(m->UpdateBias());
  return absl::OkStatus();
}

}  // namespace tandem::model
