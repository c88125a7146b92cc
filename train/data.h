// -----------------------------------------------------------------------------
// File: data.h
// -----------------------------------------------------------------------------
//
// The data of one training step as a pipeline consumes it: per micro-batch
// an input [T, input_dim] and a target. TeacherData() makes a synthetic
// regression task (targets from a fixed random "teacher" map) so that a loss
// can fall. Data is indexed by global sample: sample j of step s is the same
// bits whatever the mesh, so meshes that split the same global batch
// differently (more data-parallel replicas, other micro-batch counts) train
// on the same data. ConcatTokens() joins replicas' micro-batches token by
// token.
#ifndef TANDEM_TRAIN_DATA_H_
#define TANDEM_TRAIN_DATA_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tensor.h"

namespace tandem::train {

struct PipelineData {
  std::vector<model::Tensor> inputs;   // per micro-batch, [T, input_dim]
  std::vector<model::Target> targets;  // per micro-batch
};

// TeacherData()
//
// Data-parallel replica `replica` of `replicas`' share of step `step`'s
// global batch of `microbatches` x `tokens` samples: its micro-batch g holds
// the global samples g * tokens + [replica * t, (replica + 1) * t), t =
// tokens / replicas. Sample j: input ~ N(0, 1) seeded by (step, j), target
// tanh(x W) with a teacher W fixed for all steps. Targets are normalised by
// the global batch (microbatches x tokens samples), so partial losses add
// up to the batch's mean loss and partial gradients to its gradient, however
// it is split. kInvalidArgument naming the value when a count is negative
// or `replicas` does not divide `tokens`.
absl::StatusOr<PipelineData> TeacherData(const model::ModelConfig& c, int step, int microbatches, int tokens,
                                         int replicas = 1, int replica = 0);

// ConcatTokens()
//
// One micro-batch per index holding the tokens of every part in order,
// normalised as the parts are. kInvalidArgument when the parts differ in
// micro-batches, widths or normalisers.
absl::StatusOr<PipelineData> ConcatTokens(const std::vector<PipelineData>& parts);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_DATA_H_
