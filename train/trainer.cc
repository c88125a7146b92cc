#include "train/trainer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "balance/eplb.h"
#include "balance/metrics.h"
#include "base/speeds.h"
#include "base/status_macros.h"
#include "model/checkpoint.h"
#include "model/expert_parallel.h"
#include "plan/memory.h"
#include "plan/partition.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/validator.h"

namespace tandem::train {

namespace {

// Sums the gradients of `params` over `comm` (one all-reduce of them all,
// in rank order); a no-op on one rank.
absl::Status SumGradients(const std::vector<model::Parameter*>& params, comm::Communicator& comm, Deadline deadline) {
  if (comm.size() == 1) return absl::OkStatus();
  std::vector<float> flat;
  for (const model::Parameter* p : params) flat.insert(flat.end(), p->grad.span().begin(), p->grad.span().end());
  TANDEM_RETURN_IF_ERROR(comm::PostAndWait(comm.AllReduce(flat.data(), flat.data(), static_cast<int64_t>(flat.size()),
                                                          comm::DataType::kF32, comm::ReduceOp::kSum),
                                           deadline));
  size_t at = 0;
  for (model::Parameter* p : params) {
    std::copy(flat.begin() + at, flat.begin() + at + p->grad.numel(), p->grad.span().begin());
    at += p->grad.numel();
  }
  return absl::OkStatus();
}

}  // namespace

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
  // Everything a rank can refuse alone, before the collectives.
  TANDEM_RETURN_IF_ERROR(CheckMeshShape({options.pp, options.dp, options.ep}, world.size()));
  TANDEM_ASSIGN_OR_RETURN(std::vector<int> bounds, StageBounds(options, s));
  ResumeHeader resume;
  if (!options.resume_from.empty()) {
    TANDEM_ASSIGN_OR_RETURN(resume, ReadResumeHeader(options));
  }
  const Deadline setup = Deadline::In(options.timeout);
  TANDEM_ASSIGN_OR_RETURN(Mesh mesh,
                          MakeMesh(world, device_world, {options.pp, options.dp, options.ep}, s.directions, setup));
  std::unique_ptr<Trainer> t(new Trainer(options, std::move(mesh), std::move(s)));
  t->bounds_ = std::move(bounds);
  t->steps_ = resume.step;
  t->placement_ = std::move(resume.placement);
  t->resume_ = std::move(resume);
  TANDEM_RETURN_IF_ERROR(t->Init());
  if (!options.resume_from.empty()) TANDEM_RETURN_IF_ERROR(t->LoadResumeState());
  return t;
}

absl::Status Trainer::Init() {
  const model::ModelConfig& c = options_.model;
  if (placement_.num_layers == 0) {
    TANDEM_ASSIGN_OR_RETURN(placement_, EvenPlacement(c, options_.extra_slots, options_.ep));
  }
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
  ModelStageWork::Options wo;
  wo.overlap = options_.overlap;
  wo.trace = options_.trace;
  wo.prepare = prepare;
  wo.placer = placer;
  TANDEM_ASSIGN_OR_RETURN(work_, ModelStageWork::Create(schedule_, mesh_.pp_rank, c, bounds_, wo));
  for (auto [st, d] : work_->copies()) {
    copies_.push_back({work_->model(st, d), st, d, work_->bounds()[st], work_->bounds()[st + 1],
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
  if (options_.emulate_rank_speed && !options_.rank_speed.empty()) {
    schedule::SlowedStageWork slowed(*work_, options_.rank_speed[mesh_.pp_rank]);
    TANDEM_ASSIGN_OR_RETURN(stats.run, schedule::RunRank(schedule_, mesh_.pp_rank, slowed, pipe, eo));
  } else {
    TANDEM_ASSIGN_OR_RETURN(stats.run, schedule::RunRank(schedule_, mesh_.pp_rank, *work_, pipe, eo));
  }
  recorder_->EndStep();
  // Gradients: to the host copies, over the DualPipe pair, over the EP
  // group (dense parameters and expert replicas), over the EP groups.
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
    TANDEM_RETURN_IF_ERROR(SumGradients(params, *mesh_.groups, d));
    TANDEM_RETURN_IF_ERROR(c.opt->Step(params));
  }
  // The step's loss: the last stages' partial losses summed over the world.
  stats.losses = work_->losses();
  float local = 0;
  for (const auto& [g, l] : stats.losses) local += static_cast<float>(l);
  TANDEM_RETURN_IF_ERROR(
      comm::PostAndWait(mesh_.world->AllReduce(&local, &local, 1, comm::DataType::kF32, comm::ReduceOp::kSum), d));
  stats.loss = local;
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

absl::StatusOr<Trainer::ResumeHeader> Trainer::ReadResumeHeader(const TrainerOptions& options) {
  const std::string path = CheckpointFile(options.resume_from);
  TANDEM_ASSIGN_OR_RETURN(model::SafetensorsFile file, model::ReadSafetensors(path));
  const model::ModelConfig& c = options.model;
  ResumeHeader header;
  auto meta = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": no ", key, " (not a trainer checkpoint)"));
    }
    return it->second;
  };
  TANDEM_ASSIGN_OR_RETURN(std::string config, meta("tandem.config"));
  if (config != model::ConfigToJson(c)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": written for model config ", config.substr(0, 200),
                                                   ", this trainer's is ", model::ConfigToJson(c).substr(0, 200)));
  }
  TANDEM_ASSIGN_OR_RETURN(const int64_t n, StepOfFile(file, path));
  header.step = static_cast<int>(n);
  TANDEM_ASSIGN_OR_RETURN(std::string slots, meta(kPlacementKey));
  TANDEM_ASSIGN_OR_RETURN(balance::Placement p, PlacementFromMetadata(slots, model::NumMoeLayers(c), c.num_experts));
  // The placement carries over when this mesh has its slots; the file's
  // experts are logical, so any other placement loads too.
  if (p.num_replicas == c.num_experts + options.extra_slots && p.num_replicas % options.ep == 0) {
    header.placement = std::move(p);
  }
  TANDEM_ASSIGN_OR_RETURN(std::string loads, meta(kLoadsKey));
  TANDEM_ASSIGN_OR_RETURN(header.load_steps, LoadsFromMetadata(loads, model::NumMoeLayers(c), c.num_experts));
  header.file = std::move(file);
  return header;
}

absl::Status Trainer::LoadResumeState() {
  for (Copy& c : copies_) TANDEM_RETURN_IF_ERROR(model::ApplyState(resume_.file, *c.model, c.opt.get()));
  // The window's world sums: world rank 0 records them, every rank ends as
  // many steps, so the next Rebalance() sums what it would have.
  const int layers = model::NumMoeLayers(options_.model), experts = options_.model.num_experts;
  for (const std::vector<int64_t>& step : resume_.load_steps) {
    for (int l = 0; l < layers && mesh_.world->rank() == 0; ++l) {
      TANDEM_RETURN_IF_ERROR(
          recorder_->Record(l, absl::MakeConstSpan(step).subspan(static_cast<size_t>(l) * experts, experts)));
    }
    recorder_->EndStep();
  }
  resume_ = ResumeHeader();
  return work_->ReloadParameters();
}

absl::StatusOr<CheckpointInfo> Trainer::SaveCheckpoint(const std::string& dir, int keep) {
  if (keep < 1) return absl::InvalidArgumentError(absl::StrCat("checkpoint: keep: expected >= 1, got ", keep));
  const Deadline d = Deadline::In(options_.timeout);
  const std::string stages_dir = absl::StrCat(dir, "/.stages-", steps_);
  auto stage_file = [&](int st) { return absl::StrCat(stages_dir, "/stage-", st, ".safetensors"); };
  // Each stage once: its direction-0 copy in EP group 0.
  absl::Status mine;
  if (mesh_.ep_group == 0) {
    std::error_code ec;
    std::filesystem::create_directories(stages_dir, ec);
    model::EpOptions ep_options;
    ep_options.timeout = options_.timeout;
    for (Copy& c : copies_) {
      if (c.direction != 0 || !mine.ok()) continue;
      mine = model::SaveCheckpointEp(*c.model, c.opt.get(), *mesh_.experts, stage_file(c.stage), ep_options);
    }
  }
  // The load recorder's window, summed over the world (every rank holds
  // as many steps).
  std::vector<std::vector<int64_t>> load_steps = recorder_->WindowSteps();
  for (std::vector<int64_t>& step : load_steps) {
    TANDEM_RETURN_IF_ERROR(
        comm::PostAndWait(mesh_.world->AllReduce(step.data(), step.data(), static_cast<int64_t>(step.size()),
                                                 comm::DataType::kI64, comm::ReduceOp::kSum),
                          d));
  }
  // Everyone learns whether every stage was written.
  int64_t failed = mine.ok() ? 0 : 1;
  TANDEM_RETURN_IF_ERROR(
      comm::PostAndWait(mesh_.world->AllReduce(&failed, &failed, 1, comm::DataType::kI64, comm::ReduceOp::kSum), d));
  if (!mine.ok())
    return absl::Status(mine.code(), absl::StrCat("checkpoint: rank ", mesh_.world->rank(), ": ", mine.message()));
  if (failed > 0)
    return absl::UnavailableError(absl::StrCat("checkpoint: ", failed, " rank(s) failed to save their stage"));
  // World rank 0 merges and writes; the others take its result.
  CheckpointInfo info;
  int64_t result[2] = {0, 0};  // ok, fingerprint
  absl::Status merged;
  if (mesh_.world->rank() == 0) {
    merged = [&]() -> absl::Status {
      std::vector<model::SafetensorsFile> stages;
      for (int st = 0; st < schedule_.stages; ++st) {
        TANDEM_ASSIGN_OR_RETURN(model::SafetensorsFile f, model::ReadSafetensors(stage_file(st)));
        stages.push_back(std::move(f));
      }
      TANDEM_ASSIGN_OR_RETURN(model::SafetensorsFile file,
                              MergeStages(stages, bounds_,
                                          {{kStepKey, absl::StrCat(steps_)},
                                           {kPlacementKey, PlacementMetadata(placement_)},
                                           {kLoadsKey, LoadsMetadata(load_steps, model::NumMoeLayers(options_.model),
                                                                     options_.model.num_experts)}}));
      TANDEM_ASSIGN_OR_RETURN(info.path, WriteCheckpoint(dir, steps_, file, keep));
      info.fingerprint = Fingerprint(file);
      std::error_code ec;
      std::filesystem::remove_all(stages_dir, ec);
      return absl::OkStatus();
    }();
    result[0] = merged.ok() ? 1 : 0;
    uint64_t h = 0;
    if (merged.ok() && !absl::SimpleHexAtoi(info.fingerprint, &h)) result[0] = 0;
    std::memcpy(&result[1], &h, sizeof(h));
  }
  TANDEM_RETURN_IF_ERROR(comm::PostAndWait(mesh_.world->Broadcast(result, 2, comm::DataType::kI64, /*root=*/0), d));
  if (!merged.ok()) return merged;
  if (result[0] != 1) return absl::UnavailableError("checkpoint: world rank 0 failed to write the merged file");
  uint64_t h = 0;
  std::memcpy(&h, &result[1], sizeof(h));
  info.fingerprint = absl::StrFormat("%016x", h);
  info.path = absl::StrCat(dir, "/step-", steps_);
  return info;
}

absl::Status Trainer::Run(int steps, const std::function<PipelineData(int step)>& data,
                          const std::function<void(const StepStats&)>& on_step,
                          const std::function<void(int step, const RebalanceStats&)>& on_rebalance,
                          const std::function<void(const CheckpointInfo&)>& on_checkpoint) {
  const int every = options_.rebalance_every, save_every = options_.checkpoint_every;
  for (int i = 0; i < steps; ++i) {
    const PipelineData d = data(steps_);
    TANDEM_ASSIGN_OR_RETURN(StepStats stats, Step(d));
    if (on_step) on_step(stats);
    if (every > 0 && steps_ % every == 0 && i + 1 < steps) {
      TANDEM_ASSIGN_OR_RETURN(RebalanceStats r, Rebalance());
      if (on_rebalance) on_rebalance(steps_, r);
    }
    if (save_every > 0 && steps_ % save_every == 0 && !options_.checkpoint_dir.empty()) {
      TANDEM_ASSIGN_OR_RETURN(CheckpointInfo c, SaveCheckpoint(options_.checkpoint_dir, options_.checkpoint_keep));
      if (on_checkpoint) on_checkpoint(c);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> StageBounds(const TrainerOptions& o, const schedule::Schedule& s) {
  const int units = model::NumUnits(o.model);
  if (!o.rank_speed.empty() && static_cast<int>(o.rank_speed.size()) != s.ranks) {
    return absl::InvalidArgumentError(absl::StrFormat("rank_speed: expected %d speeds (one per pipeline rank), got %d",
                                                      s.ranks, o.rank_speed.size()));
  }
  TANDEM_RETURN_IF_ERROR(CheckSpeeds("rank_speed", o.rank_speed));
  TANDEM_ASSIGN_OR_RETURN(std::vector<plan::UnitMemory> memory, plan::UnitMemories(o.model, o.ep, o.extra_slots));
  std::vector<int> bounds = o.bounds;
  if (bounds.empty() && (!o.unit_costs.empty() || !o.rank_speed.empty() || o.memory_cap_bytes > 0)) {
    plan::PartitionRequest r;
    r.unit_costs = o.unit_costs.empty() ? std::vector<double>(units, 1.0) : o.unit_costs;
    r.rank_speed = o.rank_speed;
    r.unit_memory = memory;
    r.tokens = o.tokens;
    r.memory_cap_bytes = o.memory_cap_bytes;
    TANDEM_ASSIGN_OR_RETURN(plan::StagePlan p, plan::PartitionStages(s, r));
    bounds = p.bounds;
  } else if (bounds.empty()) {
    bounds = EvenBounds(units, s.stages);
  }
  TANDEM_RETURN_IF_ERROR(plan::CheckBounds(bounds, s.stages, units));
  if (o.memory_cap_bytes > 0) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<double> bytes, plan::RankMemoryBytes(s, memory, bounds, o.tokens));
    for (int r = 0; r < s.ranks; ++r) {
      if (bytes[r] > o.memory_cap_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrFormat("pipeline rank %d needs an estimated %.4g GiB, over the memory cap of %.4g GiB", r,
                            bytes[r] / (1 << 30), o.memory_cap_bytes / (1 << 30)));
      }
    }
  }
  return bounds;
}

absl::StatusOr<double> EstimateMemoryBytes(const TrainerOptions& o, int tokens) {
  TANDEM_ASSIGN_OR_RETURN(schedule::Schedule s, schedule::Generate({o.kind, o.pp, o.microbatches}));
  const model::ModelConfig& c = o.model;
  TANDEM_ASSIGN_OR_RETURN(std::vector<plan::UnitMemory> units, plan::UnitMemories(c, o.ep, o.extra_slots));
  const std::vector<int> bounds = o.bounds.empty() ? EvenBounds(model::NumUnits(c), s.stages) : o.bounds;
  TANDEM_ASSIGN_OR_RETURN(std::vector<double> ranks, plan::RankMemoryBytes(s, units, bounds, tokens));
  double total = 0;
  for (double b : ranks) total += b;
  // Each stage copy is created as a whole model (ModelStageWork) and keeps
  // every unit's parameters: count them all again, an upper bound.
  const double copies = static_cast<double>(s.stages) * s.directions;
  const double whole = copies * 16.0 * static_cast<double>(model::NumParameters(c));
  return static_cast<double>(o.dp) * (total + whole);
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
