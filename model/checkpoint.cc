#include "model/checkpoint.h"

#include <cstring>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tandem::model {
namespace {

Tensor VectorTensor(const Tensor& like, const std::vector<float>& v) {
  Tensor t = Tensor::Zeros(like.shape());
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

// Parameters without repeated names (replicas of one expert share a name).
std::vector<Parameter*> UniqueParameters(Model& model) {
  std::vector<Parameter*> out;
  std::set<std::string> seen;
  for (Parameter* p : model.Parameters()) {
    if (seen.insert(p->name).second) out.push_back(p);
  }
  return out;
}

absl::Status CopyInto(const SafetensorsFile& file, const std::string& name, const Tensor& dst) {
  const Tensor* src = file.Find(name);
  if (src == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: tensor '", name, "': missing"));
  }
  if (src->shape() != dst.shape() || src->dtype() != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: tensor '", name, "': expected f32 ",
                                                   ShapeString(dst.shape()), ", got ", DTypeName(src->dtype()), " ",
                                                   ShapeString(src->shape())));
  }
  std::memcpy(dst.raw(), src->raw(), dst.bytes());
  return absl::OkStatus();
}

}  // namespace

NamedTensors CollectState(Model& model, const Optimizer* optimizer) {
  NamedTensors out;
  std::vector<Parameter*> params = UniqueParameters(model);
  for (Parameter* p : params) out.emplace_back(p->name, p->value);
  for (MoeLayer* m : model.moe_layers()) out.emplace_back(m->router().bias_name(), m->router().bias());
  if (optimizer != nullptr) {
    for (int s = 0; s < optimizer->num_state_slots(); ++s) {
      for (Parameter* p : params) {
        out.emplace_back(absl::StrCat("optim.", optimizer->state_name(s), ".", p->name),
                         VectorTensor(p->value, p->state[s]));
      }
    }
  }
  return out;
}

std::map<std::string, std::string> CheckpointMetadata(const Model& model, const Optimizer* optimizer) {
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"tandem.config", ConfigToJson(model.config())}};
  if (optimizer != nullptr) {
    meta["tandem.optimizer"] = optimizer->name();
    meta["tandem.optimizer.steps"] = absl::StrCat(optimizer->steps());
  }
  return meta;
}

absl::Status ApplyState(const SafetensorsFile& file, Model& model, Optimizer* optimizer) {
  auto it = file.metadata.find("tandem.config");
  if (it == file.metadata.end()) {
    return absl::InvalidArgumentError("checkpoint: tandem.config: expected the model's config, got none");
  }
  absl::StatusOr<ModelConfig> config = ConfigFromJson(it->second);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: tandem.config: ", config.status().message()));
  }
  if (std::string diff = ConfigDifference(model.config(), *config); !diff.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint: tandem.config: written for another model (", diff, ")"));
  }
  for (Parameter* p : model.Parameters()) TANDEM_RETURN_IF_ERROR(CopyInto(file, p->name, p->value));
  for (MoeLayer* m : model.moe_layers()) {
    TANDEM_RETURN_IF_ERROR(CopyInto(file, m->router().bias_name(), m->router().bias()));
  }
  if (optimizer == nullptr) return absl::OkStatus();
  auto kind = file.metadata.find("tandem.optimizer");
  auto steps = file.metadata.find("tandem.optimizer.steps");
  int64_t n = 0;
  if (kind == file.metadata.end() || kind->second != optimizer->name() || steps == file.metadata.end() ||
      !absl::SimpleAtoi(steps->second, &n) || n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: tandem.optimizer: expected ", optimizer->name(),
                                                   " with a step count, got ",
                                                   kind == file.metadata.end() ? std::string("none") : kind->second));
  }
  for (int s = 0; s < optimizer->num_state_slots(); ++s) {
    for (Parameter* p : model.Parameters()) {
      Tensor t = Tensor::Zeros(p->value.shape());
      TANDEM_RETURN_IF_ERROR(CopyInto(file, absl::StrCat("optim.", optimizer->state_name(s), ".", p->name), t));
      p->state[s].assign(t.data<float>(), t.data<float>() + t.numel());
    }
  }
  optimizer->set_steps(n);
  return absl::OkStatus();
}

absl::Status SaveCheckpoint(Model& model, const Optimizer* optimizer, const std::string& path) {
  return WriteSafetensors(path, CollectState(model, optimizer), CheckpointMetadata(model, optimizer));
}

absl::Status LoadCheckpoint(Model& model, Optimizer* optimizer, const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  return ApplyState(file, model, optimizer);
}

}  // namespace tandem::model
