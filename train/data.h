// -----------------------------------------------------------------------------
// File: data.h
// -----------------------------------------------------------------------------
//
// The data of one training step as a pipeline consumes it: per global
// micro-batch an input [T, input_dim] and a target. TeacherData() makes a
// synthetic regression task (targets from a fixed random "teacher" map) so
// that a loss can fall; everything is seeded, so the same arguments give the
// same bits. ConcatTokens() joins the data-parallel replicas' micro-batches
// token by token, the batch sequential training sees.
#ifndef TANDEM_TRAIN_DATA_H_
#define TANDEM_TRAIN_DATA_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/model.h"
#include "model/tensor.h"

namespace tandem::train {

struct PipelineData {
  std::vector<model::Tensor> inputs;   // per global micro-batch, [T, input_dim]
  std::vector<model::Target> targets;  // per global micro-batch
};

// TeacherData()
//
// `microbatches` micro-batches of `tokens` tokens for data-parallel replica
// `replica` at step `step`: inputs ~ N(0, 1), targets tanh(x W) with a
// teacher W fixed for all steps, MSE targets whose loss is normalised by
// `normalizer` tokens (the global token count of a micro-batch, so that the
// replicas' partial losses add up).
PipelineData TeacherData(const model::ModelConfig& c, int microbatches, int tokens, int replica, int step,
                         int normalizer);

// ConcatTokens()
//
// One micro-batch per index holding the tokens of every replica in replica
// order, normalised by its own token count. kInvalidArgument when the
// replicas differ in micro-batches or widths.
absl::StatusOr<PipelineData> ConcatTokens(const std::vector<PipelineData>& replicas);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_DATA_H_
