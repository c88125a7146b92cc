#include "train/trainer.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "balance/eplb.h"
#include "balance/metrics.h"
#include "base/status_macros.h"
#include "model/expert_parallel.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/validator.h"

namespace tandem::train {

absl::StatusOr<balance::Placement> EvenPlacement(const model::ModelConfig& c, int extra_slots, int ep) {
  const int layers = model::NumMoeLayers(c), slots = c.num_experts + extra_slots;
  if (extra_slots < 0 || slots % ep != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("extra_slots: expected >= 0 with num_experts + extra_slots divisible by ep = %d, got %d + %d",
                        ep, c.num_experts, extra_slots));
  }
  std::vector<int64_t> ones(int64_t{layers} * c.num_experts, 1);
  return balance::RebalanceExperts(balance::Weights::Int64(ones, layers, c.num_experts), slots, 1, 1, ep, {});
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options, comm::Communicator& world,
                                                         comm::Communicator* device_world) {
  TANDEM_RETURN_IF_ERROR(model::ValidateConfig(options.model));
  TANDEM_ASSIGN_OR_RETURN(schedule::Schedule compute,
                          schedule::Generate({options.kind, options.pp, options.microbatches}));
  TANDEM_ASSIGN_OR_RETURN(schedule::Schedule s, schedule::Lower(compute));
  TANDEM_RETURN_IF_ERROR(schedule::Validate(s));
  const Deadline setup = Deadline::In(options.timeout);
  TANDEM_ASSIGN_OR_RETURN(Mesh mesh, MakeMesh(world, device_world, options.pp, options.ep, s.directions, setup));
  std::unique_ptr<Trainer> t(new Trainer(options, std::move(mesh), std::move(s)));
  TANDEM_RETURN_IF_ERROR(t->Init());
  return t;
}

absl::Status Trainer::Init() {
  const model::ModelConfig& c = options_.model;
  TANDEM_ASSIGN_OR_RETURN(placement_, EvenPlacement(c, options_.extra_slots, options_.ep));
  balance::LoadRecorder::Options ro;
  ro.num_layers = model::NumMoeLayers(c);
  ro.num_experts = c.num_experts;
  ro.window_steps = std::max(1, options_.rebalance_every);
  TANDEM_ASSIGN_OR_RETURN(recorder_, balance::LoadRecorder::Create(ro));
  model::EpOptions ep_options;
  ep_options.timeout = options_.timeout;
  auto prepare = [&](model::Model& m) -> absl::Status {
    m.SetLoadRecorder(recorder_.get());
    return model::DistributeExperts(m, *mesh_.experts, placement_, ep_options);
  };
  ModelPlacer placer;
  if (options_.placer) {
    if (mesh_.device_pipe == nullptr) {
      return absl::InvalidArgumentError("placer: needs a device world (Create's device_world)");
    }
    placer = options_.placer(*mesh_.device_pipe, mesh_.device_experts.get());
  }
  std::vector<int> bounds =
      options_.bounds.empty() ? EvenBounds(model::NumUnits(c), schedule_.stages) : options_.bounds;
  ModelStageWork::Options wo;
  wo.overlap = options_.overlap;
  wo.trace = options_.trace;
  wo.prepare = prepare;
  wo.placer = placer;
  TANDEM_ASSIGN_OR_RETURN(work_, ModelStageWork::Create(schedule_, mesh_.pp_rank, c, std::move(bounds), wo));
  for (auto [st, d] : work_->copies()) {
    copies_.push_back({work_->model(st, d), work_->bounds()[st], work_->bounds()[st + 1],
                       std::make_unique<model::AdamW>(options_.adamw)});
  }
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Trainer::Step(const PipelineData& data) {
  TANDEM_RETURN_IF_ERROR(work_->SetData(&data));
  work_->ClearTrace();  // the trace holds one step
  for (Copy& c : copies_) c.model->ZeroGrad();
  schedule::ExecutorOptions eo;
  eo.timeout = options_.timeout;
  eo.abort = options_.abort;
  comm::Communicator& pipe = mesh_.device_pipe != nullptr ? *mesh_.device_pipe : *mesh_.pipe;
  StepStats stats;
  stats.step = steps_;
  TANDEM_ASSIGN_OR_RETURN(stats.run, schedule::RunRank(schedule_, mesh_.pp_rank, *work_, pipe, eo));
  recorder_->EndStep();
  // Gradients: to the host copies, over the DualPipe pair, over EP.
  const Deadline d = Deadline::In(options_.timeout);
  TANDEM_RETURN_IF_ERROR(work_->SyncGradients());
  if (mesh_.pair != nullptr) TANDEM_RETURN_IF_ERROR(work_->SumCopyGradients(*mesh_.pair, d));
  model::EpOptions ep_options;
  ep_options.timeout = options_.timeout;
  for (Copy& c : copies_) {
    TANDEM_RETURN_IF_ERROR(model::SyncGradients(*c.model, *mesh_.experts, ep_options));
    std::vector<model::Parameter*> params;
    for (int u = c.begin; u < c.end; ++u) {
      for (model::Parameter* p : c.model->UnitParameters(u)) params.push_back(p);
    }
    TANDEM_RETURN_IF_ERROR(c.opt->Step(params));
  }
  // The step's loss: the last stages' partial losses summed over the world.
  stats.losses = work_->losses();
  float local = 0;
  for (const auto& [g, l] : stats.losses) local += static_cast<float>(l);
  TANDEM_RETURN_IF_ERROR(
      comm::PostAndWait(mesh_.world->AllReduce(&local, &local, 1, comm::DataType::kF32, comm::ReduceOp::kSum), d));
  stats.loss = local / schedule_.microbatches;
  TANDEM_RETURN_IF_ERROR(work_->ReloadParameters());
  ++steps_;
  return stats;
}

absl::StatusOr<RebalanceStats> Trainer::Rebalance() {
  const Deadline d = Deadline::In(options_.timeout);
  balance::LoadRecorder::Snapshot snap = recorder_->TakeSnapshot();
  std::vector<int64_t> loads = snap.window;
  // Every rank recorded its own layers and tokens.
  TANDEM_RETURN_IF_ERROR(
      comm::PostAndWait(mesh_.world->AllReduce(loads.data(), loads.data(), static_cast<int64_t>(loads.size()),
                                               comm::DataType::kI64, comm::ReduceOp::kSum),
                        d));
  const balance::Weights w = balance::Weights::Int64(loads, snap.num_layers, snap.num_experts);
  RebalanceStats out;
  out.layers = snap.num_layers;
  TANDEM_ASSIGN_OR_RETURN(balance::PlacementMetrics before, balance::ComputeMetrics(w, placement_, options_.ep));
  TANDEM_ASSIGN_OR_RETURN(balance::Placement next,
                          balance::RebalanceExperts(w, placement_.num_replicas, 1, 1, options_.ep, {}));
  TANDEM_ASSIGN_OR_RETURN(balance::PlacementMetrics after, balance::ComputeMetrics(w, next, options_.ep));
  model::EpOptions ep_options;
  ep_options.timeout = options_.timeout;
  for (Copy& c : copies_) TANDEM_RETURN_IF_ERROR(model::ApplyPlacement(*c.model, *mesh_.experts, next, ep_options));
  placement_ = std::move(next);
  TANDEM_RETURN_IF_ERROR(work_->ReloadParameters());
  out.balancedness_before = before.balancedness_aggregate;
  out.balancedness_after = after.balancedness_aggregate;
  return out;
}

absl::Status Trainer::Run(int steps, const std::function<PipelineData(int step)>& data,
                          const std::function<void(const StepStats&)>& on_step,
                          const std::function<void(int step, const RebalanceStats&)>& on_rebalance) {
  const int every = options_.rebalance_every;
  for (int i = 0; i < steps; ++i) {
    const PipelineData d = data(steps_);
    TANDEM_ASSIGN_OR_RETURN(StepStats stats, Step(d));
    if (on_step) on_step(stats);
    if (every > 0 && steps_ % every == 0 && i + 1 < steps) {
      TANDEM_ASSIGN_OR_RETURN(RebalanceStats r, Rebalance());
      if (on_rebalance) on_rebalance(steps_, r);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> EstimateMemoryBytes(const TrainerOptions& o, int tokens) {
  TANDEM_ASSIGN_OR_RETURN(schedule::Schedule s, schedule::Generate({o.kind, o.pp, o.microbatches}));
  const model::ModelConfig& c = o.model;
  const double copies = static_cast<double>(o.ep) * s.stages * s.directions;
  const double states = copies * static_cast<double>(model::NumParameters(c)) * 4 /*value, grad, m, v*/ * 4;
  // Saved per token and unit: inputs, norms, router outputs, expert rows
  // (top_k of them) with their inner activations, the shared expert's.
  const double per_token_unit =
      4.0 * (8.0 * c.hidden + 2.0 * c.num_experts + 3.0 * (c.top_k + c.num_shared_experts) * (c.moe_inter + c.hidden) +
             3.0 * c.dense_inter);
  const double activations = static_cast<double>(o.ep) * o.microbatches * tokens * model::NumUnits(c) * per_token_unit;
  return states + activations;
}

absl::Status RunOnThreads(int ranks, const std::function<absl::Status(int rank)>& fn) {
  std::vector<absl::Status> status(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { status[r] = fn(r); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; ++r) {
    if (!status[r].ok()) return absl::Status(status[r].code(), absl::StrCat("rank ", r, ": ", status[r].message()));
  }
  return absl::OkStatus();
}

}  // namespace tandem::train
