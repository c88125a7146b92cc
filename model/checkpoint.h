// -----------------------------------------------------------------------------
// File: checkpoint.h
// -----------------------------------------------------------------------------
//
// Training checkpoints of the reference model as safetensors files, keyed by
// logical names (model/README.md, "Checkpoint"):
//   <parameter name>                     e.g. layers.2.moe.experts.17.w1.weight
//   layers.<i>.moe.gate.bias             the balancing bias of MoE layer i
//   optim.<state>.<parameter name>       optimizer slots (exp_avg, ...)
//   __metadata__: format=pt, tandem.config (JSON), tandem.optimizer,
//                 tandem.optimizer.steps
// A routed expert appears once however many replicas it has, so a file is
// independent of the expert placement (expert_parallel.h saves and loads
// it on EP ranks).
//
// Example:
//   TANDEM_RETURN_IF_ERROR(SaveCheckpoint(*model, &adamw, "/ckpt/step100.safetensors"));
//   TANDEM_RETURN_IF_ERROR(LoadCheckpoint(*other, &adamw2, "/ckpt/step100.safetensors"));
#ifndef TANDEM_MODEL_CHECKPOINT_H_
#define TANDEM_MODEL_CHECKPOINT_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "model/model.h"
#include "model/optimizer.h"
#include "model/safetensors.h"

namespace tandem::model {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// CollectState()
//
// The model's tensors under their checkpoint names: every parameter (the
// first local replica of each expert only), the gate biases and, when
// `optimizer` is non-null, its state slots.
NamedTensors CollectState(Model& model, const Optimizer* optimizer);

// CheckpointMetadata()
//
// The __metadata__ entries for `model` and `optimizer` (may be null).
std::map<std::string, std::string> CheckpointMetadata(const Model& model, const Optimizer* optimizer);

// ApplyState()
//
// Copies every local tensor of `model` (and the optimizer state and step
// count when `optimizer` is non-null) from `file`. kInvalidArgument when
// the file's config differs from the model's, a tensor is missing or has
// another shape or dtype, or the optimizer kind differs; the model may be
// partly updated then.
absl::Status ApplyState(const SafetensorsFile& file, Model& model, Optimizer* optimizer);

// SaveCheckpoint(), LoadCheckpoint()
//
// Single-rank save (atomic) and load of model and optimizer state.
absl::Status SaveCheckpoint(Model& model, const Optimizer* optimizer, const std::string& path);
absl::Status LoadCheckpoint(Model& model, Optimizer* optimizer, const std::string& path);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_CHECKPOINT_H_
