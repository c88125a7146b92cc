// tandem's main job: trains a small MoE model for a few dozen steps on a mesh
// of pipeline x data-parallel ranks with expert parallelism inside data
// parallelism (threads; --backend=store for the store
// backend; demo_gpu adds --backend=cuda_local: every rank a virtual rank on
// one GPU, the model on the device) with //train's Trainer: a pipeline
// schedule (DualPipe by default), expert-parallel dispatch and combine inside
// the MoE layers, load recording and EPLB rebalancing every
// --rebalance_every steps (expert weights and optimizer state move) while
// training continues. It prints the loss per step, the check of the first
// step against sequential training, balancedness before and after each
// rebalance and the per-rank bubble (simulated and measured), and writes the
// schedule's SVG Gantt chart, the executor's Perfetto trace and a JSON report.
// With an emulated network (--ep_link, --pp_link, --ranks_per_node) it
// reports, per pipeline rank, how much of an F&B pair's expert-parallel
// communication its compute hid (train/overlap_report.h), beside the
// simulator's prediction.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "base/strict_json.h"
#include "comm/emulated/emulated_network.h"
#include "comm/local/local_communicator.h"
#include "comm/store/rendezvous.h"
#include "comm/store/store.h"
#include "comm/store/tcp_store.h"
#include "comm/store_backend/store_communicator.h"
#include "model/stage.h"
#include "plan/partition.h"
#include "plan/replan.h"
#include "schedule/executor/executor.h"
#include "schedule/generators/generate.h"
#include "schedule/simulator/render.h"
#include "schedule/simulator/simulator.h"
#include "tools/cli.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/overlap_report.h"
#include "train/trainer.h"

#ifdef TANDEM_WITH_CUDA
#include "comm/cuda_local/cuda_local_communicator.h"
#include "model/cuda/gpu_model.h"
#endif

ABSL_FLAG(std::string, kind, "dualpipe", "Pipeline schedule kind.");
ABSL_FLAG(int, pp, 4, "Pipeline ranks.");
ABSL_FLAG(int, dp, 2, "Data-parallel replicas of each pipeline stage.");
ABSL_FLAG(int, ep, 2, "Expert-parallel group size (divides --dp; the groups hold the same expert placement).");
ABSL_FLAG(int, microbatches, 8, "Micro-batches per step.");
ABSL_FLAG(int, steps, 30, "Training steps.");
ABSL_FLAG(int, rebalance_every, 10, "EPLB rebalancing interval in steps (0: never).");
ABSL_FLAG(int, tokens, 16, "Tokens per micro-batch on each data-parallel rank.");
ABSL_FLAG(int, hidden, 32, "Model width.");
ABSL_FLAG(int, units_per_stage, 2,
          "Units per pipeline stage (the first stage's input unit and the last's output unit count; the rest are MoE "
          "blocks).");
ABSL_FLAG(int, experts, 8, "Routed experts per MoE layer.");
ABSL_FLAG(int, top_k, 2, "Experts per token.");
ABSL_FLAG(int, extra_slots, 2, "Redundant expert slots per layer (EPLB replicas).");
ABSL_FLAG(std::string, backend, "local",
          "Communicator backend: local (threads), store (store backend, threads) or, in demo_gpu, cuda_local "
          "(virtual ranks on one GPU).");
ABSL_FLAG(std::string, out, "/tmp/tandem_demo", "Folder for schedule.svg, executor_trace.json and report.json.");
ABSL_FLAG(int, seed, 1, "Seed of the model and data.");
ABSL_FLAG(bool, overlap, true,
          "F&B pairs compute one micro-batch while the other's expert-parallel exchanges travel (same bits either "
          "way).");
ABSL_FLAG(std::string, ep_link, "",
          "Emulated link between expert-parallel ranks, LATENCY_US:GBPS (e.g. 20:25); with --pp_link and "
          "--ranks_per_node: an emulated network (default: none).");
ABSL_FLAG(std::string, pp_link, "", "Emulated link between pipeline ranks, LATENCY_US:GBPS.");
ABSL_FLAG(int, ranks_per_node, 0,
          "Ranks per node of the emulated network (world rank = pipeline rank x dp + data-parallel rank); ranks of "
          "one node talk for free. 0: one rank per node.");
ABSL_FLAG(std::string, partition, "flops",
          "Stage boundaries: flops (per-unit costs from the model structure, plan::UnitFlops), measured (timed on "
          "this machine; not bit-reproducible across runs) or even.");
ABSL_FLAG(std::string, rank_speed, "",
          "Relative speed of each pipeline rank, comma-separated (e.g. 1,1,0.5,1): the partition gives slower ranks "
          "less work, and each rank's passes are emulated at that speed (run, then wait (1/speed - 1) x as long).");
ABSL_FLAG(double, rank_memory_gb, 0,
          "Memory cap of one pipeline rank in GiB for the partition (plan/memory.h estimate; 0: none).");
ABSL_FLAG(std::string, checkpoint_dir, "", "Write checkpoints here (DIR/step-K; none when empty).");
ABSL_FLAG(int, checkpoint_every, 0, "Checkpoint after every K-th step (0: never; with --checkpoint_dir).");
ABSL_FLAG(int, checkpoint_keep, 2, "Checkpoints kept.");
ABSL_FLAG(std::string, resume_from, "",
          "Start from this checkpoint (DIR/step-K), written on any mesh; --steps counts from step 0, so K more "
          "steps were done.");
ABSL_FLAG(int, layers, 0, "MoE blocks (0: from --units_per_stage and the schedule's stages).");
ABSL_FLAG(double, timeout_s, 60, "Deadline of every wait of a step, in seconds.");
ABSL_FLAG(double, max_memory_gb, 0,
          "Refuse sizes whose estimated memory exceeds this many GiB (0: 80% of this machine's memory).");
ABSL_FLAG(bool, validate_only, false, "Check the flags and exit: 0 if they are valid, 2 if not.");

namespace tandem {
namespace {

// What rank threads report to the main thread.
struct Shared {
  absl::Mutex mu;
  std::vector<double> step_loss;                  // per step, from rank 0
  std::vector<std::vector<double>> first_losses;  // [dp][g] first step, from the last stages
  std::vector<schedule::RankRun> runs;            // pipeline ranks' second step (dp 0)
  std::vector<std::vector<double>> step_ms;       // [step][world rank]
  // Pipeline ranks' F&B pairs of the last step (dp 0), by rank.
  std::vector<std::vector<train::PairOverlap>> pairs;
  json::Json rebalances = json::Json::array();
};

// The emulated network of the flags, or nullptr without one.
absl::StatusOr<std::unique_ptr<comm::EmulatedNetwork>> Network(int dp) {
  const std::string ep_link = absl::GetFlag(FLAGS_ep_link), pp_link = absl::GetFlag(FLAGS_pp_link);
  const int per_node = absl::GetFlag(FLAGS_ranks_per_node);
  if (per_node < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--ranks_per_node: expected >= 0, got %d", per_node));
  }
  if (ep_link.empty() && pp_link.empty() && per_node == 0) return nullptr;
  comm::Link ep_spec, pp_spec;
  if (!ep_link.empty()) {
    TANDEM_ASSIGN_OR_RETURN(ep_spec, comm::ParseLink("--ep_link", ep_link));
  }
  if (!pp_link.empty()) {
    TANDEM_ASSIGN_OR_RETURN(pp_spec, comm::ParseLink("--pp_link", pp_link));
  }
  comm::NetworkModel m;
  m.ranks_per_node = std::max(per_node, 1);
  // Ranks of one pipeline rank exchange MoE tokens; the others activations.
  m.between_nodes = [dp, ep_spec, pp_spec](int a, int b) { return a / dp == b / dp ? ep_spec : pp_spec; };
  return std::make_unique<comm::EmulatedNetwork>(m);
}

// The median of `v` (not empty).
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#ifdef TANDEM_WITH_CUDA
// Each stage copy on the GPU of `pipe`'s stream, its MoE tokens moving
// through `experts`.
train::ModelPlacer GpuPlacer(comm::Communicator& pipe, comm::Communicator* experts) {
  return [&pipe, experts](model::Model& host) -> absl::StatusOr<std::unique_ptr<model::UnitModel>> {
    model::cuda::GpuMoeOptions o;
    o.expert_comm = experts;
    TANDEM_ASSIGN_OR_RETURN(auto g, model::cuda::GpuModel::Create(host, comm::CudaLocalStream(pipe), o));
    return std::unique_ptr<model::UnitModel>(std::move(g));
  };
}
#endif

// The first step's per-micro-batch losses of sequential training: all
// tokens of a micro-batch on one rank with every expert local.
absl::StatusOr<std::vector<double>> SequentialFirstStep(const train::TrainerOptions& o, int tokens) {
  TANDEM_ASSIGN_OR_RETURN(train::PipelineData all, train::TeacherData(o.model, 0, o.microbatches, tokens * o.dp));
  TANDEM_ASSIGN_OR_RETURN(auto reference, model::Model::Create(o.model));
  return train::Sequential(*reference, all);
}

// Simulated bubble per pipeline rank with the mean measured duration of
// each action kind of the second step.
absl::StatusOr<schedule::SimResult> SimulateMeasured(const schedule::Schedule& s,
                                                     const std::vector<schedule::RankRun>& runs,
                                                     schedule::CostModel* cost) {
  double sum[5] = {}, count[5] = {};
  for (int r = 0; r < s.ranks; ++r) {
    const auto& p = s.programs[r].actions;
    for (size_t i = 0; i < p.size() && i < runs[r].timeline.size(); ++i) {
      if (!schedule::IsCompute(p[i].op)) continue;
      const int k = static_cast<int>(p[i].op);
      sum[k] += runs[r].timeline[i].end - runs[r].timeline[i].start;
      count[k] += 1;
    }
  }
  auto mean = [&](schedule::Op op, double fallback) {
    const int k = static_cast<int>(op);
    return count[k] > 0 ? sum[k] / count[k] / 1000.0 : fallback;  // ms
  };
  cost->f = {mean(schedule::Op::kForward, 1)};
  cost->b = {mean(schedule::Op::kBackward, 2 * cost->f[0])};
  cost->i = {mean(schedule::Op::kBackwardInput, cost->f[0])};
  cost->w = {mean(schedule::Op::kBackwardWeight, cost->f[0])};
  cost->fb = {mean(schedule::Op::kForwardBackward, cost->f[0] + cost->b[0])};
  return schedule::Simulate(s, {*cost});
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// The fields every report.json has; the in-process run adds its bounds,
// bubble, overlap and rebalance figures, a process membership its
// generation.
json::Json ReportBase(const train::TrainerOptions& o, int steps, int first, double seconds,
                      const std::vector<double>& loss, double step_ms_median, const std::string& fingerprint) {
  return {{"kind", schedule::KindName(o.kind)},
          {"pp", o.pp},
          {"dp", o.dp},
          {"ep", o.ep},
          {"microbatches", o.microbatches},
          {"steps", steps},
          {"first_step", first},
          {"seconds", seconds},
          {"loss", loss},
          {"step_ms_median", step_ms_median},
          {"fingerprint", fingerprint}};
}

absl::Status WriteReport(const std::string& out, const json::Json& report) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, json::Dump(report));
  return WriteText(out + "/report.json", text + "\n");
}

// What the flags decide, all checked before anything runs.
struct Setup {
  train::TrainerOptions o;
  std::vector<int> bounds;  // units per stage
  int start = 0;            // the step a resumed run starts at
  int steps = 0, tokens = 0, stages = 0;
  std::string out, backend;
  std::unique_ptr<comm::EmulatedNetwork> network;
};

absl::StatusOr<Setup> FromFlags() {
  Setup setup;
  train::TrainerOptions& o = setup.o;
  TANDEM_ASSIGN_OR_RETURN(o.kind, schedule::ParseKind(absl::GetFlag(FLAGS_kind)));
  o.pp = absl::GetFlag(FLAGS_pp);
  o.dp = absl::GetFlag(FLAGS_dp);
  o.ep = absl::GetFlag(FLAGS_ep);
  o.microbatches = absl::GetFlag(FLAGS_microbatches);
  o.extra_slots = absl::GetFlag(FLAGS_extra_slots);
  o.rebalance_every = absl::GetFlag(FLAGS_rebalance_every);
  o.overlap = absl::GetFlag(FLAGS_overlap);
  setup.steps = absl::GetFlag(FLAGS_steps);
  setup.tokens = absl::GetFlag(FLAGS_tokens);
  setup.out = absl::GetFlag(FLAGS_out);
  setup.backend = absl::GetFlag(FLAGS_backend);
  const int units_per_stage = absl::GetFlag(FLAGS_units_per_stage);
  const int experts = absl::GetFlag(FLAGS_experts);
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("pp", o.pp, 1, 256));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("dp", o.dp, 1, 256));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("ep", o.ep, 1, o.dp, " (--dp)"));
  if (o.dp % o.ep != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--ep: expected a divisor of --dp %d (expert-parallel groups lie inside data parallelism), got %d", o.dp,
        o.ep));
  }
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("dp", int64_t{o.pp} * o.dp, 1, 1024, " rank threads (--pp x --dp)"));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("microbatches", o.microbatches, 1, 1 << 16));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("steps", setup.steps, 1, 1000000));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("rebalance_every", o.rebalance_every, 0, 1000000));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("tokens", setup.tokens, 1, 1 << 20));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("hidden", absl::GetFlag(FLAGS_hidden), 1, 1 << 16));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("units_per_stage", units_per_stage, 2, 1024));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("experts", experts, 1, 4096));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("top_k", absl::GetFlag(FLAGS_top_k), 1, experts, " (--experts)"));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("extra_slots", o.extra_slots, 0, 4096));
  if (setup.backend != "local" && setup.backend != "store") {
#ifdef TANDEM_WITH_CUDA
    if (setup.backend != "cuda_local") {
      return absl::InvalidArgumentError(
          absl::StrFormat("--backend: expected local, store or cuda_local, got '%s'", setup.backend));
    }
#else
    return absl::InvalidArgumentError(absl::StrFormat(
        "--backend: expected local or store, got '%s' (cuda_local is in the GPU build: bazel run //tools:demo_gpu)",
        setup.backend));
#endif
  }
  // Stages per rank come from the schedule. Library errors name the flags
  // they came from.
  auto from = [](absl::string_view flags, const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(flags, ": ", s.message()));
  };
  absl::StatusOr<schedule::Schedule> probe = schedule::Generate({o.kind, o.pp, o.microbatches});
  if (!probe.ok()) return from("--kind, --pp, --microbatches", probe.status());
  setup.stages = probe->stages;
  model::ModelConfig& c = o.model;
  c.hidden = absl::GetFlag(FLAGS_hidden);
  c.input_dim = 8;
  c.output_dim = 8;
  const int layers = absl::GetFlag(FLAGS_layers);
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("layers", layers, 0, 4096));
  c.num_layers = layers > 0 ? layers : units_per_stage * probe->stages - 2;
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (!(timeout_s > 0 && timeout_s <= 86400)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--timeout_s: expected seconds in (0, 86400], got %g", timeout_s));
  }
  o.timeout = absl::Seconds(timeout_s);
  c.num_experts = experts;
  c.top_k = absl::GetFlag(FLAGS_top_k);
  c.moe_inter = 2 * c.hidden;
  c.bias_update_speed = 0.0f;  // the DualPipe copies must stay identical
  c.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = model::ValidateConfig(c); !s.ok()) {
    return from("--hidden, --experts, --top_k, --units_per_stage", s);
  }
  if (absl::Status s = train::EvenPlacement(c, o.extra_slots, o.ep).status(); !s.ok()) {
    return from("--experts, --extra_slots, --ep", s);
  }
  // Stage boundaries: the partition for the costs, speeds and memory cap.
  TANDEM_ASSIGN_OR_RETURN(o.rank_speed, cli::ParseSpeeds("rank_speed", absl::GetFlag(FLAGS_rank_speed), o.pp));
  o.emulate_rank_speed = true;
  o.tokens = setup.tokens;
  const double rank_gb = absl::GetFlag(FLAGS_rank_memory_gb);
  if (!(rank_gb >= 0) || !std::isfinite(rank_gb)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--rank_memory_gb: expected a finite value >= 0, got %g", rank_gb));
  }
  o.memory_cap_bytes = rank_gb * (1 << 30);
  const std::string partition = absl::GetFlag(FLAGS_partition);
  if (partition == "flops") {
    o.unit_costs = plan::UnitFlops(c);
  } else if (partition == "measured") {
    TANDEM_ASSIGN_OR_RETURN(auto probe_model, model::Model::Create(c));
    TANDEM_ASSIGN_OR_RETURN(train::PipelineData one, train::TeacherData(c, 0, 1, setup.tokens));
    TANDEM_ASSIGN_OR_RETURN(o.unit_costs, model::MeasureUnitCosts(*probe_model, one.inputs[0], one.targets[0], 5));
  } else if (partition == "even") {
    o.bounds = train::EvenBounds(model::NumUnits(c), probe->stages);
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("--partition: expected flops, measured or even, got '%s'", json::Excerpt(partition, 40)));
  }
  absl::StatusOr<std::vector<int>> bounds = train::StageBounds(o, *probe);
  if (!bounds.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition, --rank_speed, --rank_memory_gb: ", bounds.status().message()));
  }
  setup.bounds = *bounds;
  // Checkpoints.
  o.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  o.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  o.checkpoint_keep = absl::GetFlag(FLAGS_checkpoint_keep);
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("checkpoint_every", o.checkpoint_every, 0, 1000000));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("checkpoint_keep", o.checkpoint_keep, 1, 1000));
  o.resume_from = absl::GetFlag(FLAGS_resume_from);
  if (!o.resume_from.empty()) {
    absl::StatusOr<int64_t> start = train::CheckpointStep(o.resume_from);
    if (!start.ok()) return absl::InvalidArgumentError(absl::StrCat("--resume_from: ", start.status().message()));
    if (*start >= setup.steps) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--steps: expected more than the checkpoint's %d steps (--steps counts from step 0), got %d",
                          *start, setup.steps));
    }
    setup.start = static_cast<int>(*start);
  }
  // The trainers, and the sequential reference of the first step (one more
  // model and every micro-batch's tokens).
  TANDEM_ASSIGN_OR_RETURN(double bytes, train::EstimateMemoryBytes(o, setup.tokens));
  train::TrainerOptions reference = o;
  reference.kind = schedule::Kind::kGPipe;
  reference.pp = 1;
  reference.dp = 1;
  reference.ep = 1;
  TANDEM_ASSIGN_OR_RETURN(const double reference_bytes, train::EstimateMemoryBytes(reference, setup.tokens * o.dp));
  bytes += reference_bytes;
  TANDEM_RETURN_IF_ERROR(cli::CheckMemory(
      bytes, absl::GetFlag(FLAGS_max_memory_gb), 0.8,
      absl::StrFormat("sizes (--pp %d x --dp %d, --microbatches %d x --tokens %d, --hidden %d, --experts %d, %d MoE "
                      "blocks)",
                      o.pp, o.dp, o.microbatches, setup.tokens, c.hidden, c.num_experts, model::NumMoeLayers(c))));
  TANDEM_ASSIGN_OR_RETURN(setup.network, Network(o.dp));
  return setup;
}

absl::Status Run(Setup setup) {
  train::TrainerOptions& o = setup.o;
  const model::ModelConfig& c = o.model;
  const int steps = setup.steps, tokens = setup.tokens, n = o.microbatches;
  const std::string& out = setup.out;
  const std::string& backend = setup.backend;
  std::unique_ptr<comm::EmulatedNetwork> network = std::move(setup.network);
  std::printf(
      "tandem demo: %s on %d pipeline x %d data-parallel ranks, expert-parallel groups of %d (%s backend), %d stages, "
      "%d micro-batches\n",
      std::string(schedule::KindName(o.kind)).c_str(), o.pp, o.dp, o.ep, backend.c_str(), setup.stages, n);
  std::printf("  model: %d MoE blocks, hidden %d, %d experts (+%d redundant slots), top-%d\n", c.num_layers, c.hidden,
              c.num_experts, o.extra_slots, c.top_k);
  std::string stages;
  for (size_t st = 0; st + 1 < setup.bounds.size(); ++st) {
    absl::StrAppend(&stages, st == 0 ? "" : " ", "[", setup.bounds[st], ",", setup.bounds[st + 1], ")");
  }
  std::printf("  stages (units, --partition=%s%s): %s\n", absl::GetFlag(FLAGS_partition).c_str(),
              o.rank_speed.empty() ? "" : absl::StrCat(", --rank_speed=", absl::GetFlag(FLAGS_rank_speed)).c_str(),
              stages.c_str());

  const int world_size = o.pp * o.dp;
  comm::MemoryStore store;
  std::vector<std::unique_ptr<comm::Communicator>> world, device_world;
  if (backend == "store") {
    for (int r = 0; r < world_size; ++r) world.push_back(comm::MakeStoreCommunicator(&store, r, world_size, "demo/"));
  } else if (backend == "local") {
    world = comm::CreateLocalGroup(world_size);
  } else {
#ifdef TANDEM_WITH_CUDA
    world = comm::CreateLocalGroup(world_size);
    TANDEM_ASSIGN_OR_RETURN(device_world, comm::CreateCudaLocalGroup(world_size));  // names a missing GPU
    o.placer = GpuPlacer;
#endif
  }

  if (network != nullptr) {
    world = network->Wrap(std::move(world));
    o.trace = true;
    std::printf("  emulated network: %d ranks per node, EP link %s, PP link %s; overlap %s\n",
                std::max(absl::GetFlag(FLAGS_ranks_per_node), 1), absl::GetFlag(FLAGS_ep_link).c_str(),
                absl::GetFlag(FLAGS_pp_link).c_str(), o.overlap ? "on" : "off");
  }
  // Steps [first, steps) run here; a fresh run is checked against
  // sequential training on its first step.
  const int first = setup.start;
  std::vector<double> sequential;
  if (first == 0) {
    TANDEM_ASSIGN_OR_RETURN(sequential, SequentialFirstStep(o, tokens));
  } else {
    std::printf("  resumed from %s at step %d\n", o.resume_from.c_str(), first);
  }
  Shared shared;
  shared.first_losses.assign(o.dp, std::vector<double>(n, 0.0));
  shared.runs.resize(o.pp);
  shared.step_ms.assign(steps - first, std::vector<double>(world_size, 0.0));
  std::string fingerprint;
  shared.pairs.resize(o.pp);
  schedule::MemoryAbortBoard board;
  o.abort = &board;
  schedule::Schedule s;
  const absl::Time start = absl::Now();
  TANDEM_RETURN_IF_ERROR(train::RunOnThreads(world_size, [&](int r) -> absl::Status {
    comm::Communicator* device = device_world.empty() ? nullptr : device_world[r].get();
    absl::StatusOr<std::unique_ptr<train::Trainer>> t = train::Trainer::Create(o, *world[r], device);
    if (!t.ok()) {
      board.Post(absl::StrCat("rank ", r, ": ", t.status().message()));
      return t.status();
    }
    const train::Mesh& mesh = (*t)->mesh();
    if (r == 0) s = (*t)->schedule();
    auto data = [&](int step) { return *train::TeacherData(c, step, n, tokens * o.dp, o.dp, mesh.dp_rank); };
    auto on_step = [&](const train::StepStats& st) {
      std::vector<train::PairOverlap> pairs;
      if (network != nullptr && st.step == steps - 1 && mesh.dp_rank == 0) {
        // This rank's F&B pairs of the last step.
        const std::vector<comm::ModeledOp> log = network->Log(r);
        const auto& actions = (*t)->schedule().programs[mesh.pp_rank].actions;
        for (size_t i = 0; i < actions.size(); ++i) {
          if (actions[i].op != schedule::Op::kForwardBackward) continue;
          const auto at = [&](double us) {
            return st.run.start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double, std::micro>(us));
          };
          pairs.push_back(train::PairFigures((*t)->work().trace()->events(), at(st.run.timeline[i].start),
                                             at(st.run.timeline[i].end), log, o.overlap));
        }
      }
      absl::MutexLock lock(&shared.mu);
      shared.step_ms[st.step - first][r] = st.run.step_us / 1000;
      if (!pairs.empty()) shared.pairs[mesh.pp_rank] = std::move(pairs);
      if (st.step == 0) {
        for (const auto& [g, l] : st.losses) shared.first_losses[mesh.dp_rank][g] = l;
      }
      if (st.step == first + std::min(1, steps - first - 1) && mesh.dp_rank == 0) shared.runs[mesh.pp_rank] = st.run;
      if (r == 0) {
        shared.step_loss.push_back(st.loss);
        std::printf("step %3d  loss %.6f  (%.1f ms on pipeline rank 0)\n", st.step, st.loss, st.run.step_us / 1000);
        std::fflush(stdout);
      }
    };
    auto on_rebalance = [&](int step, const train::RebalanceStats& rb) {
      if (r != 0) return;
      absl::MutexLock lock(&shared.mu);
      shared.rebalances.push_back({{"step", step},
                                   {"balancedness_before", rb.balancedness_before},
                                   {"balancedness_after", rb.balancedness_after}});
      std::printf(
          "step %3d  EPLB rebalance: balancedness %.3f -> %.3f (mean/max expert-parallel rank load, %d "
          "layers); expert weights moved\n",
          step, rb.balancedness_before, rb.balancedness_after, rb.layers);
    };
    auto on_checkpoint = [&](const train::CheckpointInfo& info) {
      if (r == 0)
        std::printf("step %3d  checkpoint %s (fingerprint %s)\n", (*t)->steps_done(), info.path.c_str(),
                    info.fingerprint.c_str());
    };
    absl::Status st = (*t)->Run(steps - first, data, on_step, on_rebalance, on_checkpoint);
    // The whole logical model, gathered, for comparing runs on any mesh.
    if (st.ok()) {
      absl::StatusOr<train::CheckpointInfo> last = (*t)->SaveCheckpoint(out + "/final", 1);
      if (last.ok() && r == 0) fingerprint = last->fingerprint;
      st = last.status();
    }
    if (!st.ok()) board.Post(absl::StrCat("rank ", r, ": ", st.message()));
    return st;
  }));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  // The first step against sequential training (fresh runs).
  double first_error = 0;
  for (int g = 0; g < n && first == 0; ++g) {
    double sum = 0;
    for (int e = 0; e < o.dp; ++e) sum += shared.first_losses[e][g];
    first_error = std::max(first_error, std::fabs(sum - sequential[g]) / std::max(1e-12, std::fabs(sequential[g])));
  }
  // f32 on the CPU: the same sums in another grouping; on the GPU, cuBLAS
  // sums in its own order (model/cuda/gpu_model_test).
  const double bound = device_world.empty() ? 1e-5 : 1e-4;
  if (first == 0) {
    std::printf(
        "first step vs sequential training (one rank, all experts, CPU): max relative loss difference %.2e "
        "over %d micro-batches (%s, bound %.0e)\n",
        first_error, n, first_error < bound ? "ok" : "MISMATCH", bound);
  }

  schedule::CostModel cost;
  TANDEM_ASSIGN_OR_RETURN(schedule::SimResult sim, SimulateMeasured(s, shared.runs, &cost));
  std::printf("per-rank bubble (ms), second step, costs F=%.2f B=%.2f I=%.2f W=%.2f FB=%.2f ms measured:\n", cost.f[0],
              cost.b[0], cost.i[0], cost.w[0], cost.fb[0]);
  json::Json bubble = json::Json::array();
  for (int r = 0; r < o.pp; ++r) {
    const double measured = (shared.runs[r].step_us - shared.runs[r].compute_us) / 1000;
    std::printf("  pipeline rank %d: simulated %.2f, measured %.2f (step %.2f ms)\n", r, sim.ranks[r].idle, measured,
                shared.runs[r].step_us / 1000);
    bubble.push_back({{"rank", r}, {"bubble_simulated_ms", sim.ranks[r].idle}, {"bubble_measured_ms", measured}});
  }
  std::string mkdir = absl::StrCat("mkdir -p '", out, "'");
  if (std::system(mkdir.c_str()) != 0) return absl::InternalError(absl::StrCat("cannot create ", out));
  TANDEM_RETURN_IF_ERROR(WriteText(out + "/schedule.svg", schedule::RenderSvg(s, sim)));
  TANDEM_ASSIGN_OR_RETURN(std::string trace, schedule::ExecutorChromeTrace(s, shared.runs));
  TANDEM_RETURN_IF_ERROR(WriteText(out + "/executor_trace.json", trace));
  // The F&B pairs: per pipeline rank the median of each figure over its
  // pairs of the last step.
  json::Json overlap = json::Json::array();
  if (network != nullptr) {
    std::printf("F&B pairs of the last step (medians over each pipeline rank's pairs; overlap %s):\n",
                o.overlap ? "on" : "off");
    for (int r = 0; r < o.pp; ++r) {
      const std::vector<train::PairOverlap>& pairs = shared.pairs[r];
      if (pairs.empty()) continue;
      std::vector<double> fb, compute, comm, predicted;
      for (const train::PairOverlap& p : pairs) {
        fb.push_back(p.fb_ms);
        compute.push_back(p.compute_ms);
        comm.push_back(p.comm_ms);
        predicted.push_back(p.predicted_fb_ms);
      }
      train::PairOverlap m;
      m.fb_ms = Median(fb);
      m.compute_ms = Median(compute);
      m.comm_ms = Median(comm);
      m.predicted_fb_ms = Median(predicted);
      if (m.comm_ms > 0) m.hidden_fraction = std::clamp(1 - (m.fb_ms - m.compute_ms) / m.comm_ms, 0.0, 1.0);
      json::Json row = {{"rank", r},
                        {"pairs", pairs.size()},
                        {"fb_ms", m.fb_ms},
                        {"compute_ms", m.compute_ms},
                        {"comm_ms", m.comm_ms}};
      if (m.hidden_fraction) row["hidden_fraction"] = *m.hidden_fraction;
      row["predicted_fb_ms"] = m.predicted_fb_ms;
      overlap.push_back(row);
      std::printf(
          "  pipeline rank %d (%zu pairs): fb %.2f ms, compute %.2f ms, comm %.2f ms, hidden %s, predicted fb "
          "%.2f ms\n",
          r, pairs.size(), m.fb_ms, m.compute_ms, m.comm_ms,
          m.hidden_fraction ? absl::StrFormat("%.2f", *m.hidden_fraction).c_str() : "-", m.predicted_fb_ms);
    }
  }
  std::vector<double> step_ms;
  for (const std::vector<double>& ranks : shared.step_ms)
    step_ms.push_back(*std::max_element(ranks.begin(), ranks.end()));
  json::Json report = ReportBase(o, steps, first, seconds, shared.step_loss, Median(step_ms), fingerprint);
  report["bounds"] = setup.bounds;
  report["first_step_max_relative_loss_error"] = first == 0 ? json::Json(first_error) : json::Json();
  report["rebalances"] = shared.rebalances;
  report["bubble"] = bubble;
  report["overlap"] = overlap;
  TANDEM_RETURN_IF_ERROR(WriteReport(out, report));
  std::printf("final parameters fingerprint: %s\n", fingerprint.c_str());
  std::printf("loss %.4f -> %.4f over %d steps in %.1f s\n", shared.step_loss.front(), shared.step_loss.back(),
              steps - first, seconds);
  std::printf("wrote %s/schedule.svg (Gantt chart), %s/executor_trace.json (Perfetto), %s/report.json\n", out.c_str(),
              out.c_str(), out.c_str());
  return absl::OkStatus();
}

// One rank per process under tools/launch (--backend=store with RANK set):
// the TCP store from the environment, rank 0 printing and writing
// report.json (its membership's steps, losses, generation and the final
// fingerprint; no bubble or overlap figures). Under an elastic
// launcher (TANDEM_GENERATION > 0) the job re-forms: the mesh re-planned for
// the ranks there are (plan/replan.h), training resumed from the newest
// checkpoint. A rank of a superseded membership exits with code 3 and
// writes nothing.
constexpr int kFenced = 3;
constexpr absl::string_view kGenerationKey = "tandem/demo/generation";

int RunProcess() {
  const absl::Time begin = absl::Now();
  absl::StatusOr<comm::Bootstrap> boot = comm::BootstrapFromEnv(Deadline::In(absl::Minutes(2)));
  if (!boot.ok()) {
    std::fprintf(stderr, "demo: %s\n", std::string(boot.status().message()).c_str());
    return cli::ExitCode(boot.status());
  }
  const int rank = boot->info.rank, world = boot->info.world_size, gen = boot->info.generation;
  // Ends the process with the fencing message when the store holds a newer
  // generation than this membership's.
  const comm::RendezvousInfo info = boot->info;
  auto check_fence = [info, rank, gen](std::unique_ptr<comm::TcpStore>& store) {
    const Deadline d = Deadline::In(absl::Seconds(1));
    if (store == nullptr) {
      absl::StatusOr<std::unique_ptr<comm::TcpStore>> s = comm::ConnectStore(info, d);
      if (!s.ok()) return;
      store = *std::move(s);
    }
    absl::StatusOr<std::string> current = store->Get(kGenerationKey, d);
    int now = gen;
    if (!current.ok()) {
      if (!comm::IsStoreTimeout(current.status())) store = nullptr;  // reconnect next time
      return;
    }
    if (absl::SimpleAtoi(*current, &now) && now > gen) {
      std::fprintf(stderr,
                   "demo: rank %d: fenced: generation %d was superseded by generation %d; exiting without "
                   "writing\n",
                   rank, gen, now);
      std::fflush(stderr);
      std::_Exit(kFenced);
    }
  };
  // A watcher on a connection of its own, whatever the training thread
  // waits for, and a last check on failing (a new connection: the old one
  // may have timed out mid-reply).
  std::thread([check_fence] {
    std::unique_ptr<comm::TcpStore> store;
    while (true) {
      absl::SleepFor(absl::Milliseconds(500));
      check_fence(store);
    }
  }).detach();
  auto fail = [&](const absl::Status& s) {
    std::unique_ptr<comm::TcpStore> store;
    check_fence(store);
    std::fprintf(stderr, "demo: rank %d: %s\n", rank, std::string(s.message()).c_str());
    return cli::ExitCode(s);
  };
  absl::StatusOr<Setup> setup = FromFlags();
  if (!setup.ok()) return fail(setup.status());
  std::string resumed;
  if (gen > 0) {
    // Re-plan the original job for the ranks there are; resume from the
    // newest checkpoint.
    const train::TrainerOptions& o = setup->o;
    plan::JobShape job;
    job.kind = o.kind;
    job.pp = o.pp;
    job.dp = o.dp;
    job.ep = o.ep;
    job.microbatches = o.microbatches;
    job.tokens = setup->tokens;
    job.extra_slots = o.extra_slots;
    absl::StatusOr<plan::JobShape> next = plan::Replan(job, world, model::NumUnits(o.model), o.model.num_experts);
    if (!next.ok()) return fail(next.status());
    // No checkpoint yet (or none asked for): the re-formed job starts over.
    absl::StatusOr<std::string> latest = o.checkpoint_dir.empty() ? absl::NotFoundError("no --checkpoint_dir")
                                                                  : train::LatestCheckpoint(o.checkpoint_dir);
    if (!latest.ok() && !absl::IsNotFound(latest.status())) return fail(latest.status());
    absl::SetFlag(&FLAGS_kind, std::string(schedule::KindName(next->kind)));
    absl::SetFlag(&FLAGS_pp, next->pp);
    absl::SetFlag(&FLAGS_dp, next->dp);
    absl::SetFlag(&FLAGS_ep, next->ep);
    absl::SetFlag(&FLAGS_microbatches, next->microbatches);
    absl::SetFlag(&FLAGS_tokens, next->tokens);
    absl::SetFlag(&FLAGS_layers, o.model.num_layers);
    absl::SetFlag(&FLAGS_resume_from, latest.ok() ? *latest : std::string());
    resumed = absl::StrFormat("%s --layers=%d", next->Flags(), o.model.num_layers);
    setup = FromFlags();
    if (!setup.ok()) return fail(setup.status());
  }
  train::TrainerOptions& o = setup->o;
  const int ranks = o.pp * o.dp;
  if (ranks > world) {
    return fail(absl::InvalidArgumentError(
        absl::StrFormat("--pp %d x --dp %d needs %d ranks, the launch has %d", o.pp, o.dp, ranks, world)));
  }
  if (rank == 0) {
    absl::Status s = boot->store->Set(kGenerationKey, absl::StrCat(gen));
    if (!s.ok()) return fail(s);
    if (!resumed.empty()) {
      std::printf("resumed from %s with: -n %d %s\n",
                  o.resume_from.empty() ? "step 0 (no checkpoint yet)" : o.resume_from.c_str(), ranks, resumed.c_str());
      std::printf("recovery: re-plan and restart %.0f ms after this process began\n",
                  absl::ToDoubleMilliseconds(absl::Now() - begin));
    }
    std::fflush(stdout);
  }
  if (rank >= ranks) {
    std::printf("rank %d idle in generation %d (the mesh uses %d ranks)\n", rank, gen, ranks);
    absl::Status s = boot->Finish(Deadline::In(o.timeout));
    return s.ok() ? 0 : fail(s);
  }
  std::unique_ptr<comm::Communicator> comm =
      comm::MakeStoreCommunicator(boot->store.get(), rank, ranks, absl::StrCat("demo/g", gen, "/"));
  schedule::StoreAbortBoard board(boot->store.get(), absl::StrCat("demo/g", gen, "/abort"));
  o.abort = &board;
  const absl::Time create = absl::Now();
  absl::StatusOr<std::unique_ptr<train::Trainer>> t = train::Trainer::Create(o, *comm);
  if (!t.ok()) return fail(t.status());
  if (rank == 0 && !resumed.empty()) {
    std::printf("recovery: checkpoint load (trainer created) %.0f ms\n",
                absl::ToDoubleMilliseconds(absl::Now() - create));
  }
  const int first = (*t)->steps_done(), n = o.microbatches, tokens = setup->tokens;
  const train::Mesh& mesh = (*t)->mesh();
  auto data = [&](int step) { return *train::TeacherData(o.model, step, n, tokens * o.dp, o.dp, mesh.dp_rank); };
  bool first_step = true;
  std::vector<double> losses, step_ms;  // rank 0's view of this membership's steps
  auto on_step = [&](const train::StepStats& st) {
    if (rank != 0) return;
    losses.push_back(st.loss);
    step_ms.push_back(st.run.step_us / 1000);
    std::printf("step %d loss %.6f\n", st.step, st.loss);
    if (first_step && !resumed.empty()) {
      std::printf("recovery: first step %.0f ms\n", st.run.step_us / 1000);
    }
    first_step = false;
    std::fflush(stdout);
  };
  auto on_checkpoint = [&](const train::CheckpointInfo& info) {
    if (rank == 0) std::printf("checkpoint %s\n", info.path.c_str());
    std::fflush(stdout);
  };
  absl::Status s = (*t)->Run(setup->steps - first, data, on_step, nullptr, on_checkpoint);
  if (!s.ok()) return fail(s);
  absl::StatusOr<train::CheckpointInfo> last = (*t)->SaveCheckpoint(setup->out + "/final", 1);
  if (!last.ok()) return fail(last.status());
  if (rank == 0) {
    // What this membership did; an elastic job's last membership writes the
    // report last.
    json::Json report = ReportBase(o, setup->steps, first, absl::ToDoubleSeconds(absl::Now() - begin), losses,
                                   step_ms.empty() ? 0.0 : Median(step_ms), last->fingerprint);
    report["generation"] = gen;
    report["processes"] = world;
    report["resumed_from"] = o.resume_from;
    s = WriteReport(setup->out, report);
    if (!s.ok()) return fail(s);
    std::printf("final parameters fingerprint: %s\nwrote %s/report.json\n", last->fingerprint.c_str(),
                setup->out.c_str());
  }
  s = boot->Finish(Deadline::In(o.timeout));
  return s.ok() ? 0 : fail(s);
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tandem end-to-end demo: MoE training with a pipeline schedule, EP and EPLB.\n"
      "Exit status: 0 done, 2 bad flags (named, before anything runs), 1 a failure while running.");
  tandem::cli::ParseFlags(argc, argv);
  if (absl::GetFlag(FLAGS_backend) == "store" && std::getenv("RANK") != nullptr &&
      !absl::GetFlag(FLAGS_validate_only)) {
    return tandem::RunProcess();
  }
  absl::StatusOr<tandem::Setup> setup = tandem::FromFlags();
  if (!setup.ok()) {
    std::fprintf(stderr, "demo: %s\n", std::string(setup.status().message()).c_str());
    return tandem::cli::kBadInvocation;
  }
  if (absl::GetFlag(FLAGS_validate_only)) {
    std::printf("demo: flags ok\n");
    return 0;
  }
  const absl::Status s = tandem::Run(*std::move(setup));
  if (!s.ok()) {
    std::fprintf(stderr, "demo: %s\n", std::string(s.message()).c_str());
    return tandem::cli::kFailure;
  }
  return 0;
}
