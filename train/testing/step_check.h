// -----------------------------------------------------------------------------
// File: step_check.h
// -----------------------------------------------------------------------------
//
// What the training-step tests share: a small MoE model and its data, one
// pipeline step of a lowered schedule over a group of communicators (one
// thread per rank), and the comparison of the step's gradients with a
// sequentially trained reference. Test-only (tests and benchmarks).

#ifndef TANDEM_TRAIN_TESTING_STEP_CHECK_H_
#define TANDEM_TRAIN_TESTING_STEP_CHECK_H_

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "comm/communicator.h"
#include "model/model.h"
#include "schedule/ir/schedule.h"
#include "train/model_stage_work.h"

namespace tandem::train::testing {

// 4 units: input projection, 2 MoE blocks, head.
model::ModelConfig StepConfig();
// n micro-batches of `tokens` tokens, MSE targets; fixed seeds.
PipelineData StepData(const model::ModelConfig& c, int n, int tokens = 5);

// 1 - 2 sum(xy) / sum(x^2 + y^2), in double (DualPipe's check).
double CalDiff(absl::Span<const float> x, absl::Span<const float> y);

struct StepResult {
  std::map<int, double> losses;  // by global micro-batch
  std::vector<std::unique_ptr<ModelStageWork>> work;
};

// RunStep()
//
// Runs every rank of `s` on comms[rank] (EXPECTs every rank to succeed);
// with `placer`, rank r's stage copies run where placer(r) puts them
// (overlapped F&B then runs F and B in turn) and their gradients are
// synced to the host models afterwards.
StepResult RunStep(const Schedule& s, const model::ModelConfig& c, const PipelineData& data,
                   std::vector<std::unique_ptr<comm::Communicator>>& comms, bool forward_only,
                   const std::function<ModelPlacer(int rank)>& placer = nullptr);

// ExpectGradientsMatch()
//
// For every stage, the gradients of its copies (two for DualPipe, summed in
// direction order) against `reference`'s: bitwise when `bound` is 0 (one
// direction), else CalDiff < bound.
void ExpectGradientsMatch(const Schedule& s, const StepResult& step, model::Model& reference, double bound);

}  // namespace tandem::train::testing

#endif  // TANDEM_TRAIN_TESTING_STEP_CHECK_H_
