// -----------------------------------------------------------------------------
// File: trainer.h
// -----------------------------------------------------------------------------
//
// The training loop as a library. A Trainer is one rank of a pipeline x
// data-parallel mesh with expert parallelism inside data parallelism
// (mesh.h) training the reference MoE model (//model) with a pipeline
// schedule (//schedule) and AdamW. Step() runs one step: zero the
// gradients, run the rank's program of the lowered schedule, record expert
// loads, sum gradients over DualPipe's two stage copies, over the
// data-parallel replicas (dense parameters) and over every replica of each
// logical expert (EPLB's redundant slots and the other EP groups), and take
// the optimizer step. Rebalance() is EPLB between steps: loads summed over
// the world, a new placement, expert weights and their optimizer state
// moved inside every EP group. Run() is the loop of both.
//
// Every rank of the world calls the same methods in the same order (they
// are collective); a failing rank makes the others fail with its reason
// (options.abort) or a deadline naming it, never hang.
//
// Example (one thread per rank of comm::CreateLocalGroup(pp * dp)):
//   TANDEM_ASSIGN_OR_RETURN(auto t, Trainer::Create(options, *world[r]));
//   TANDEM_ASSIGN_OR_RETURN(StepStats s, t->Step(data));
#ifndef TANDEM_TRAIN_TRAINER_H_
#define TANDEM_TRAIN_TRAINER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "balance/load_recorder.h"
#include "balance/placement.h"
#include "comm/communicator.h"
#include "model/config.h"
#include "model/model.h"
#include "model/optimizer.h"
#include "model/safetensors.h"
#include "schedule/executor/executor.h"
#include "schedule/ir/schedule.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/mesh.h"
#include "train/model_stage_work.h"

namespace tandem::train {

struct TrainerOptions {
  schedule::Kind kind = schedule::Kind::kDualPipe;
  int pp = 1;            // pipeline ranks
  int dp = 1;            // data-parallel replicas of each stage
  int ep = 1;            // expert-parallel group size, dividing dp
  int microbatches = 2;  // per step
  model::ModelConfig model;
  // Unit boundaries per stage (model::NumUnits units). Empty: from the
  // partitioner (plan/partition.h) when unit_costs, rank_speed or
  // memory_cap_bytes is given, else as even as possible.
  std::vector<int> bounds;
  // Per-unit costs of one micro-batch (plan::UnitFlops(), or measured:
  // model::MeasureUnitCosts()); empty: all equal. Same on every rank.
  std::vector<double> unit_costs;
  // Relative speed of each pipeline rank (pp values > 0; empty: all 1), for
  // the partition; with emulate_rank_speed, each of the rank's passes also
  // runs and then waits (1 / speed - 1) times its duration
  // (schedule::SlowedStageWork), emulating a slower device.
  std::vector<double> rank_speed;
  bool emulate_rank_speed = false;
  // A pipeline rank's memory cap (plan/memory.h estimate with `tokens`
  // tokens per micro-batch; 0: none): the partition keeps under it, and
  // Create() refuses bounds that do not fit, naming the rank and estimate.
  double memory_cap_bytes = 0;
  int tokens = 0;
  // A checkpoint's step directory (checkpoint.h: DIR/step-K) to start
  // from, written on any mesh: parameters, optimizer state, gate biases, the
  // step (data and learning-rate position), the load recorder's window and,
  // when its slot count fits this mesh, the EPLB placement. Every rank reads the file (one host, or a
  // shared file system).
  std::string resume_from;
  // Run() saves a checkpoint into checkpoint_dir after every
  // checkpoint_every-th step (0: never), keeping the newest
  // checkpoint_keep.
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int checkpoint_keep = 2;
  // Redundant expert slots per MoE layer (EPLB replicas) in each EP group;
  // the total num_experts + extra_slots must divide by ep.
  int extra_slots = 0;
  // Run(): EPLB after every rebalance_every-th step but the last (0: never);
  // the load recorder's window is as many steps.
  int rebalance_every = 0;
  model::AdamWOptions adamw;
  // F&B overlaps the expert-parallel exchanges of one micro-batch with the
  // other's compute, and MoE passes their shared expert with their own
  // dispatch (same bits either way); `trace` records the phases
  // (work().trace()).
  bool overlap = true;
  bool trace = false;
  absl::Duration timeout = absl::Minutes(1);  // every wait of a step
  schedule::AbortBoard* abort = nullptr;      // shared by the ranks, optional
  // Places each stage copy's model elsewhere (a GPU), given the device
  // pipeline and EP communicators of the mesh; nullptr: on the host.
  std::function<ModelPlacer(comm::Communicator& device_pipe, comm::Communicator* device_experts)> placer;
};

struct StepStats {
  int step = 0;                  // 0-based index of the step just taken
  double loss = 0;               // the global batch's loss: every partial loss summed (every rank)
  std::map<int, double> losses;  // this rank's last-stage partial losses, by micro-batch
  schedule::RankRun run;         // this pipeline rank's program
};

struct CheckpointInfo {
  std::string path;         // DIR/step-K
  std::string fingerprint;  // checkpoint.h Fingerprint(): the whole logical model
};

struct RebalanceStats {
  double balancedness_before = 0;  // mean / max EP-rank load, all layers (balance/metrics.h)
  double balancedness_after = 0;
  int layers = 0;
};

class Trainer {
 public:
  // Trainer::Create()
  //
  // Collective over `world` (and `device_world`, with cuda_local). Builds
  // the mesh, the lowered and validated schedule, this rank's stage copies
  // (same seed everywhere, experts spread over the EP group by an even
  // EPLB placement with extra_slots replicas) and one AdamW per stage copy.
  // kInvalidArgument naming the bad option (mesh, kind preconditions,
  // bounds, speeds, model config, slots); kResourceExhausted when the
  // stages do not fit memory_cap_bytes. Options a rank can refuse alone
  // are refused before any collective.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options, comm::Communicator& world,
                                                         comm::Communicator* device_world = nullptr);

  // Trainer::Step()
  //
  // One training step on `data`, this rank's data-parallel share of the
  // global batch (options.microbatches micro-batches, targets normalised by
  // the global batch: TeacherData(..., dp, mesh().dp_rank)).
  absl::StatusOr<StepStats> Step(const PipelineData& data);

  // Trainer::Rebalance()
  //
  // EPLB on the loads recorded since the last rebalance (summed over the
  // world), applied to every stage copy: experts and their optimizer state
  // move between the EP ranks.
  absl::StatusOr<RebalanceStats> Rebalance();

  // Trainer::SaveCheckpoint()
  //
  // Collective, between steps: writes DIR/step-<steps_done()> (checkpoint.h)
  // and keeps the newest `keep`. Each stage's copy on EP group 0 saves its
  // model (experts gathered in the group); world rank 0 merges the stages
  // and writes the file. Every rank returns the same result; a failure
  // names the rank and file.
  absl::StatusOr<CheckpointInfo> SaveCheckpoint(const std::string& dir, int keep = 2);

  // Trainer::Run()
  //
  // `steps` more steps on data(step), with Rebalance() after every
  // options.rebalance_every-th step except the last, then SaveCheckpoint()
  // after every options.checkpoint_every-th step. `on_step`, `on_rebalance`
  // and `on_checkpoint` (optional) see each result on this rank.
  absl::Status Run(int steps, const std::function<PipelineData(int step)>& data,
                   const std::function<void(const StepStats&)>& on_step = nullptr,
                   const std::function<void(int step, const RebalanceStats&)>& on_rebalance = nullptr,
                   const std::function<void(const CheckpointInfo&)>& on_checkpoint = nullptr);

  const schedule::Schedule& schedule() const { return schedule_; }
  const Mesh& mesh() const { return mesh_; }
  const balance::Placement& placement() const { return placement_; }
  ModelStageWork& work() { return *work_; }
  int steps_done() const { return steps_; }

 private:
  struct Copy {
    model::Model* model;
    int stage, direction;
    int begin, end;  // units
    std::unique_ptr<model::AdamW> opt;
  };
  Trainer(const TrainerOptions& options, Mesh mesh, schedule::Schedule s)
      : options_(options), mesh_(std::move(mesh)), schedule_(std::move(s)) {}
  absl::Status Init();
  // options.resume_from, read once before any collective (step, placement,
  // load window); its tensors go into every copy after Init.
  struct ResumeHeader {
    int step = 0;
    balance::Placement placement;                  // empty: EvenPlacement
    std::vector<std::vector<int64_t>> load_steps;  // the recorder's window, world sums
    model::SafetensorsFile file;                   // the tensors, for LoadResumeState()
  };
  static absl::StatusOr<ResumeHeader> ReadResumeHeader(const TrainerOptions& options);
  absl::Status LoadResumeState();

  const TrainerOptions options_;
  Mesh mesh_;
  const schedule::Schedule schedule_;
  std::vector<int> bounds_;  // units per stage
  ResumeHeader resume_;      // from options_.resume_from; cleared once applied
  balance::Placement placement_;
  std::unique_ptr<balance::LoadRecorder> recorder_;
  std::unique_ptr<ModelStageWork> work_;
  std::vector<Copy> copies_;
  int steps_ = 0;
};

// EvenPlacement()
//
// The placement a Trainer starts from: EPLB on equal loads, num_experts +
// extra_slots slots per MoE layer over `ep` ranks.
absl::StatusOr<balance::Placement> EvenPlacement(const model::ModelConfig& c, int extra_slots, int ep);

// EstimateMemoryBytes()
//
// A rough upper bound of the host memory that a whole world of Trainers
// (every rank) needs with `tokens` tokens per micro-batch on each
// data-parallel rank:
// parameters, gradients and both AdamW moments of every stage copy (each
// created as a whole model before its experts are distributed), and every
// micro-batch's activations through every unit alive at once. For refusing
// sizes up front; kInvalidArgument for options Generate() refuses.
absl::StatusOr<double> EstimateMemoryBytes(const TrainerOptions& o, int tokens);

// StageBounds()
//
// The stage boundaries a Trainer with these options uses on schedule `s`
// (Generate() of options.kind, pp and microbatches; lowered or not):
// options.bounds, the partition, or the even split; then the memory cap
// check. Errors of plan::PartitionStages() and plan::CheckBounds();
// kResourceExhausted naming the rank over the cap and its estimate.
absl::StatusOr<std::vector<int>> StageBounds(const TrainerOptions& options, const schedule::Schedule& s);

// RunOnThreads()
//
// Runs fn(rank) for rank 0..ranks-1 on one thread each and returns the
// first failure as "rank R: why" (OK when all succeed).
absl::Status RunOnThreads(int ranks, const std::function<absl::Status(int rank)>& fn);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_TRAINER_H_
