#include "train/model_stage_work.h"

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::train {

std::vector<int> EvenBounds(int units, int stages) {
  std::vector<int> b(stages + 1);
  for (int s = 0; s <= stages; ++s) b[s] = static_cast<int>(int64_t{units} * s / stages);
  return b;
}

absl::StatusOr<std::unique_ptr<ModelStageWork>> ModelStageWork::Create(const Schedule& s, int rank,
                                                                       const model::ModelConfig& config,
                                                                       std::vector<int> bounds, Options options) {
  const int units = model::NumUnits(config);
  if (static_cast<int>(bounds.size()) != s.stages + 1 || bounds.front() != 0 || bounds.back() != units) {
    return absl::InvalidArgumentError(absl::StrFormat("bounds: expected %d entries from 0 to %d (units), got %d",
                                                      s.stages + 1, units, bounds.size()));
  }
  for (int i = 0; i < s.stages; ++i) {
    if (bounds[i] >= bounds[i + 1]) {
      return absl::InvalidArgumentError(
          absl::StrFormat("bounds: stage %d has no units ([%d, %d))", i, bounds[i], bounds[i + 1]));
    }
  }
  std::unique_ptr<ModelStageWork> w(new ModelStageWork(s, std::move(bounds), options));
  for (int d = 0; d < s.directions; ++d) {
    for (int st = 0; st < s.stages; ++st) {
      if (s.RankOf(d, st) != rank) continue;
      Copy c;
      TANDEM_ASSIGN_OR_RETURN(c.model, model::Model::Create(config));
      if (options.prepare) TANDEM_RETURN_IF_ERROR(options.prepare(*c.model));
      if (options.placer) {
        TANDEM_ASSIGN_OR_RETURN(c.placed, options.placer(*c.model));
      }
      model::Stage::Options o;
      o.store = &w->store_;
      o.phases.overlap = options.overlap;
      o.phases.trace = options.trace ? &w->trace_ : nullptr;
      model::UnitModel* runs = c.placed != nullptr ? c.placed.get() : c.model.get();
      TANDEM_ASSIGN_OR_RETURN(c.stage, model::Stage::Create(runs, w->bounds_[st], w->bounds_[st + 1], o));
      w->copies_[{st, d}] = std::move(c);
    }
  }
  return w;
}

absl::Status ModelStageWork::SetData(const PipelineData* data) {
  if (data == nullptr || static_cast<int>(data->inputs.size()) < s_.microbatches ||
      static_cast<int>(data->targets.size()) < s_.microbatches) {
    return absl::InvalidArgumentError(absl::StrFormat("data: expected inputs and targets for %d micro-batches, got %d",
                                                      s_.microbatches, data == nullptr ? 0 : data->inputs.size()));
  }
  // Shapes, before anything runs (an empty micro-batch would otherwise
  // leave its peers waiting for a message that never comes).
  const model::ModelConfig& c = copies_.begin()->second.model->config();
  for (int g = 0; g < s_.microbatches; ++g) {
    const model::Tensor& x = data->inputs[g];
    if (x.rank() != 2 || x.dim(0) < 1 || x.dim(1) != c.input_dim) {
      return absl::InvalidArgumentError(absl::StrFormat("data: micro-batch %d: expected inputs [T >= 1, %d], got %s", g,
                                                        c.input_dim, model::ShapeString(x.shape())));
    }
    const model::Target& t = data->targets[g];
    const bool values = t.values.rank() == 2 && t.values.dim(0) == x.dim(0) && t.values.dim(1) == c.output_dim;
    bool labels = t.values.numel() == 0 && static_cast<int64_t>(t.labels.size()) == x.dim(0);
    for (int32_t l : t.labels) labels = labels && l >= 0 && l < c.output_dim;
    if (!values && !labels) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "data: micro-batch %d: expected targets [%d, %d] or %d labels in [0, %d), got values %s and %d labels", g,
          x.dim(0), c.output_dim, x.dim(0), c.output_dim, model::ShapeString(t.values.shape()), t.labels.size()));
    }
  }
  data_ = data;
  return absl::OkStatus();
}

absl::StatusOr<ModelStageWork::Copy*> ModelStageWork::At(const Slot& s) {
  if (data_ == nullptr) return absl::FailedPreconditionError("no data for this step (call SetData first)");
  auto it = copies_.find({s.stage, s.direction});
  if (it == copies_.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stage %d direction %d is not on this rank", s.stage, s.direction));
  }
  return &it->second;
}

int64_t ModelStageWork::BoundaryElements(const Slot& s) const {
  if (data_ == nullptr) return 0;  // Forward() and Backward() then say why
  return data_->inputs[Global(s)].dim(0) * int64_t{copies_.begin()->second.model->config().hidden};
}

// Buffers and tensors share storage: nothing is copied.
absl::StatusOr<model::Tensor> ModelStageWork::AsTensor(const Slot& s, Buffer b) const {
  if (b.empty()) return model::Tensor();
  const int64_t tokens = data_->inputs[Global(s)].dim(0);
  const int64_t width = b.size() / std::max<int64_t>(tokens, 1);
  if (tokens * width != b.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stage %d mb %d: buffer of %d floats is not %d tokens wide", s.stage, s.mb, b.size(), tokens));
  }
  const bool placed = copies_.begin()->second.placed != nullptr;
  return model::Tensor::FromStorage({tokens, width}, model::DType::kF32,
                                    placed ? model::Device::kCuda : model::Device::kHost, b.storage());
}

namespace {
Buffer AsBuffer(const model::Tensor& t) {
  if (t.numel() == 0) return Buffer();
  return Buffer(t.storage(), t.numel());
}
}  // namespace

absl::StatusOr<Buffer> ModelStageWork::NewBuffer(int64_t elements) {
  const Copy& c = copies_.begin()->second;
  if (c.placed == nullptr) return schedule::StageWork::NewBuffer(elements);
  TANDEM_ASSIGN_OR_RETURN(model::Tensor t, c.placed->NewActivation({elements}));
  return AsBuffer(t);
}

absl::Status ModelStageWork::SyncGradients() {
  for (auto& [key, c] : copies_) {
    if (c.placed != nullptr) TANDEM_RETURN_IF_ERROR(c.placed->SyncGradients());
  }
  return absl::OkStatus();
}

absl::Status ModelStageWork::ReloadParameters() {
  for (auto& [key, c] : copies_) {
    if (c.placed != nullptr) TANDEM_RETURN_IF_ERROR(c.placed->ReloadParameters());
  }
  return absl::OkStatus();
}

absl::StatusOr<Buffer> ModelStageWork::Forward(const Slot& s, Buffer input) {
  TANDEM_ASSIGN_OR_RETURN(Copy * c, At(s));
  const int g = Global(s);
  model::Tensor x;
  if (s.stage == 0) {
    x = data_->inputs[g];
  } else {
    TANDEM_ASSIGN_OR_RETURN(x, AsTensor(s, std::move(input)));
  }
  const model::Target* target = c->stage->is_last() ? &data_->targets[g] : nullptr;
  TANDEM_ASSIGN_OR_RETURN(model::Tensor out, c->stage->Forward(g, x, target));
  if (c->stage->is_last()) return Buffer();
  return AsBuffer(out);
}

absl::StatusOr<Buffer> ModelStageWork::Backward(const Slot& s, Buffer output_grad) {
  TANDEM_ASSIGN_OR_RETURN(Copy * c, At(s));
  TANDEM_ASSIGN_OR_RETURN(model::Tensor dy, AsTensor(s, std::move(output_grad)));
  TANDEM_ASSIGN_OR_RETURN(model::Tensor dx, c->stage->Backward(Global(s), dy));
  return s.stage == 0 ? Buffer() : AsBuffer(dx);
}

absl::StatusOr<Buffer> ModelStageWork::BackwardInput(const Slot& s, Buffer output_grad) {
  TANDEM_ASSIGN_OR_RETURN(Copy * c, At(s));
  TANDEM_ASSIGN_OR_RETURN(model::Tensor dy, AsTensor(s, std::move(output_grad)));
  TANDEM_ASSIGN_OR_RETURN(model::Tensor dx, c->stage->BackwardInput(Global(s), dy));
  return s.stage == 0 ? Buffer() : AsBuffer(dx);
}

absl::Status ModelStageWork::BackwardWeight(const Slot& s) {
  TANDEM_ASSIGN_OR_RETURN(Copy * c, At(s));
  return c->stage->BackwardWeight();  // pops the rank's oldest unit (FIFO)
}

absl::StatusOr<std::pair<Buffer, Buffer>> ModelStageWork::ForwardBackward(const Slot& f, Buffer input, const Slot& b,
                                                                          Buffer output_grad) {
  TANDEM_ASSIGN_OR_RETURN(Copy * cf, At(f));
  TANDEM_ASSIGN_OR_RETURN(Copy * cb, At(b));
  const int gf = Global(f);
  model::Tensor x;
  if (f.stage == 0) {
    x = data_->inputs[gf];
  } else {
    TANDEM_ASSIGN_OR_RETURN(x, AsTensor(f, std::move(input)));
  }
  TANDEM_ASSIGN_OR_RETURN(model::Tensor dy, AsTensor(b, std::move(output_grad)));
  const model::Target* target = cf->stage->is_last() ? &data_->targets[gf] : nullptr;
  TANDEM_ASSIGN_OR_RETURN(model::ForwardBackwardResult r,
                          model::ForwardBackward(*cf->stage, gf, x, target, *cb->stage, Global(b), dy));
  return std::make_pair(cf->stage->is_last() ? Buffer() : AsBuffer(r.output),
                        b.stage == 0 ? Buffer() : AsBuffer(r.input_grad));
}

std::map<int, double> ModelStageWork::losses() const {
  std::map<int, double> out;
  for (const auto& [key, c] : copies_) {
    if (!c.stage->is_last()) continue;
    for (int g = 0; g < s_.microbatches; ++g) {
      absl::StatusOr<double> l = c.stage->loss(g);
      if (l.ok()) out[g] = *l;
    }
  }
  return out;
}

absl::Status ModelStageWork::SumCopyGradients(comm::Communicator& pair, Deadline deadline) {
  if (s_.directions != 2) return absl::OkStatus();
  // Both ranks of the pair hold the same two stages: sum in stage order.
  for (const auto& [key, c] : copies_) {
    const int stage = key.first;
    for (int u = bounds_[stage]; u < bounds_[stage + 1]; ++u) {
      for (model::Parameter* p : c.model->UnitParameters(u)) {
        TANDEM_RETURN_IF_ERROR(comm::PostAndWait(
            pair.AllReduce(p->grad.raw(), p->grad.raw(), p->grad.numel(), comm::DataType::kF32, comm::ReduceOp::kSum),
            deadline));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<int, int>> ModelStageWork::copies() const {
  std::vector<std::pair<int, int>> out;
  for (const auto& [key, c] : copies_) out.push_back(key);
  return out;
}

model::Model* ModelStageWork::model(int stage, int direction) const {
  auto it = copies_.find({stage, direction});
  return it == copies_.end() ? nullptr : it->second.model.get();
}

absl::StatusOr<std::vector<double>> Sequential(model::UnitModel& m, const PipelineData& data) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::Stage> stage, model::Stage::Create(&m, 0, m.num_units(), {}));
  std::vector<double> losses;
  for (size_t g = 0; g < data.inputs.size(); ++g) {
    TANDEM_RETURN_IF_ERROR(stage->Forward(static_cast<int>(g), data.inputs[g], &data.targets[g]).status());
    TANDEM_ASSIGN_OR_RETURN(double l, stage->loss(static_cast<int>(g)));
    losses.push_back(l);
    TANDEM_RETURN_IF_ERROR(stage->Backward(static_cast<int>(g), model::Tensor()).status());
  }
  return losses;
}

}  // namespace tandem::train
