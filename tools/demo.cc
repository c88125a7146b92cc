// tandem's main job: trains a small MoE model for a few dozen steps on a mesh
// of pipeline x expert-parallel ranks (threads, or --backend=store for the
// store backend; demo_gpu adds --backend=cuda_local: every rank a virtual
// rank on one GPU, the model on the device), with a pipeline schedule
// (DualPipe by default) across the pipeline dimension, expert-parallel
// dispatch and combine inside the MoE layers, a load recorder, and EPLB
// rebalancing the experts every --rebalance_every steps (moving expert
// weights and optimizer state) while training continues. It prints the loss
// per step, the check of the first step against sequential training,
// per-rank bubble (simulated and measured), balancedness before and after
// each rebalance, and writes the schedule's SVG Gantt chart and a JSON
// report.
//
// With cuda_local, activations, gradients and the MoE tokens move between
// device buffers through cuda_local communicators; the optimizer runs on the
// host copies of the parameters (gradients downloaded, summed over the
// DualPipe pairs and EP replicas through a thread group, new values
// uploaded again), and expert moves go through that thread group too.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "balance/eplb.h"
#include "balance/load_recorder.h"
#include "balance/metrics.h"
#include "base/status_macros.h"
#include "comm/local/local_communicator.h"
#include "comm/store/store_communicator.h"
#include "model/expert_parallel.h"
#include "model/optimizer.h"
#include "schedule/executor/executor.h"
#include "schedule/executor/model_stage_work.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/simulator/render.h"
#include "schedule/simulator/simulator.h"
#include "schedule/validator/validator.h"

#ifdef TANDEM_WITH_CUDA
#include "comm/cuda_local/cuda_local_communicator.h"
#include "model/cuda/gpu_model.h"
#endif

ABSL_FLAG(std::string, kind, "dualpipe", "Pipeline schedule kind.");
ABSL_FLAG(int, pp, 4, "Pipeline ranks.");
ABSL_FLAG(int, ep, 2, "Expert-parallel ranks per pipeline rank.");
ABSL_FLAG(int, microbatches, 8, "Micro-batches per step.");
ABSL_FLAG(int, steps, 30, "Training steps.");
ABSL_FLAG(int, rebalance_every, 10, "EPLB rebalancing interval in steps (0: never).");
ABSL_FLAG(int, tokens, 16, "Tokens per micro-batch on each expert-parallel rank.");
ABSL_FLAG(int, hidden, 32, "Model width.");
ABSL_FLAG(int, experts, 8, "Routed experts per MoE layer.");
ABSL_FLAG(int, top_k, 2, "Experts per token.");
ABSL_FLAG(int, extra_slots, 2, "Redundant expert slots per layer (EPLB replicas).");
ABSL_FLAG(std::string, backend, "local",
          "Communicator backend: local (threads), store (store backend, threads) or, in demo_gpu, cuda_local "
          "(virtual ranks on one GPU).");
ABSL_FLAG(std::string, out, "/tmp/tandem_demo", "Folder for schedule.svg and report.json.");
ABSL_FLAG(int, seed, 1, "Seed of the model and data.");

namespace tandem {
namespace {

using schedule::Kind;
using schedule::Schedule;

struct Shared {
  absl::Mutex mu;
  std::vector<double> sequential;                 // [g] first step, one rank
  std::vector<double> step_loss;                  // per step: mean over micro-batches
  std::vector<std::vector<double>> first_losses;  // [ep][g] first step, from the last stages
  double first_step_error = 0;
  std::vector<schedule::RankRun> runs;            // pipeline ranks' second step (ep 0)
  std::vector<std::string> rebalances;
};

// Data of one expert-parallel rank and step: inputs and a fixed "teacher"
// mapping as targets, so the loss can fall.
schedule::PipelineData MakeData(const model::ModelConfig& c, int n, int tokens, int ep_rank, int step,
                                int normalizer) {
  schedule::PipelineData d;
  std::mt19937 teacher(12345);
  std::normal_distribution<float> normal;
  std::vector<float> w(c.input_dim * c.output_dim);
  for (float& x : w) x = normal(teacher) / std::sqrt(static_cast<float>(c.input_dim));
  for (int g = 0; g < n; ++g) {
    std::mt19937 rng(1000003u * step + 7919u * g + 104729u * ep_rank + 17);
    std::vector<float> x(tokens * c.input_dim), y(tokens * c.output_dim, 0.0f);
    for (float& v : x) v = normal(rng);
    for (int t = 0; t < tokens; ++t) {
      for (int o = 0; o < c.output_dim; ++o) {
        float acc = 0;
        for (int i = 0; i < c.input_dim; ++i) acc += x[t * c.input_dim + i] * w[i * c.output_dim + o];
        y[t * c.output_dim + o] = std::tanh(acc);
      }
    }
    d.inputs.push_back(*model::Tensor::FromVector({tokens, c.input_dim}, x));
    model::Target target;
    target.values = *model::Tensor::FromVector({tokens, c.output_dim}, y);
    target.normalizer = normalizer;  // the global token count: EP partial losses add up
    d.targets.push_back(std::move(target));
  }
  return d;
}

// Places each stage copy on the GPU of `pipe`'s stream, its experts' tokens
// moving through `experts` (nullptr placer without CUDA or for host data).
schedule::ModelPlacer GpuPlacer(comm::Communicator* pipe, comm::Communicator* experts) {
#ifdef TANDEM_WITH_CUDA
  if (experts != nullptr) {
    return [pipe, experts](model::Model& host) -> absl::StatusOr<std::unique_ptr<model::UnitModel>> {
      model::cuda::GpuMoeOptions o;
      o.expert_comm = experts;
      TANDEM_ASSIGN_OR_RETURN(auto g, model::cuda::GpuModel::Create(host, comm::CudaLocalStream(*pipe), o));
      return std::unique_ptr<model::UnitModel>(std::move(g));
    };
  }
#endif
  return nullptr;
}

// One rank of the pp x ep mesh. `world` carries the host's collectives;
// `device_world`, when set (cuda_local), the activations and MoE tokens.
absl::Status RunRankMain(int world_rank, comm::Communicator& world, comm::Communicator* device_world,
                         const Schedule& s, const model::ModelConfig& c, balance::Placement placement,
                         Shared& shared) {
  const int ep = absl::GetFlag(FLAGS_ep), pp_rank = world_rank / ep, ep_rank = world_rank % ep;
  const int n = absl::GetFlag(FLAGS_microbatches), tokens = absl::GetFlag(FLAGS_tokens);
  const Deadline setup = Deadline::In(absl::Minutes(2));
  comm::Communicator& data_world = device_world != nullptr ? *device_world : world;
  TANDEM_ASSIGN_OR_RETURN(auto pipe, data_world.Split(ep_rank, pp_rank, setup));     // my pipeline
  TANDEM_ASSIGN_OR_RETURN(auto experts, world.Split(pp_rank, ep_rank, setup));       // my EP group
  std::unique_ptr<comm::Communicator> device_experts;                                // its device twin
  if (device_world != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(device_experts, device_world->Split(pp_rank, ep_rank, setup));
  }
  // DualPipe: the two copies of a stage live on pipeline ranks r and R-1-r.
  const int pair_color = ep_rank * s.ranks + std::min(pp_rank, s.ranks - 1 - pp_rank);
  TANDEM_ASSIGN_OR_RETURN(auto pair, world.Split(s.directions == 2 ? pair_color : comm::Communicator::kNoColor,
                                                 pp_rank, setup));
  const int global_tokens = tokens * ep;
  schedule::PipelineData data = MakeData(c, n, tokens, ep_rank, 0, global_tokens);
  balance::LoadRecorder::Options ro;
  ro.num_layers = model::NumMoeLayers(c);
  ro.num_experts = c.num_experts;
  ro.window_steps = std::max(1, absl::GetFlag(FLAGS_rebalance_every));
  TANDEM_ASSIGN_OR_RETURN(auto recorder, balance::LoadRecorder::Create(ro));
  auto prepare = [&](model::Model& m) -> absl::Status {
    for (model::MoeLayer* l : m.moe_layers()) l->SetRecorder(recorder.get());
    return model::DistributeExperts(m, *experts, placement);
  };
  TANDEM_ASSIGN_OR_RETURN(auto work,
                          schedule::ModelStageWork::Create(s, pp_rank, c,
                                                           schedule::EvenBounds(c.num_layers + 2, s.stages), &data,
                                                           /*overlap_threads=*/false, prepare,
                                                           GpuPlacer(pipe.get(), device_experts.get())));
  // One optimizer per stage copy, over that stage's parameters (listed
  // anew every step: a rebalance replaces expert parameters, and their
  // optimizer state travels inside them).
  struct Trained {
    model::Model* model;
    int begin, end;  // units
    std::unique_ptr<model::AdamW> opt;
    std::vector<model::Parameter*> Params() const {
      std::vector<model::Parameter*> out;
      for (int u = begin; u < end; ++u) {
        for (model::Parameter* p : model->UnitParameters(u)) out.push_back(p);
      }
      return out;
    }
  };
  std::vector<Trained> trained;
  for (auto [st, d] : work->copies()) {
    trained.push_back({work->model(st, d), work->bounds()[st], work->bounds()[st + 1],
                       std::make_unique<model::AdamW>(model::AdamWOptions{})});
  }
  schedule::ExecutorOptions eo;
  eo.timeout = absl::Minutes(1);
  const int steps = absl::GetFlag(FLAGS_steps), every = absl::GetFlag(FLAGS_rebalance_every);
  for (int step = 0; step < steps; ++step) {
    if (step > 0) data = MakeData(c, n, tokens, ep_rank, step, global_tokens);
    work->set_data(&data);
    for (Trained& t : trained) t.model->ZeroGrad();
    TANDEM_ASSIGN_OR_RETURN(schedule::RankRun run, schedule::RunRank(s, pp_rank, *work, *pipe, eo));
    recorder->EndStep();
    // Gradients: the DualPipe pair's two copies, then expert parallelism.
    const Deadline d = Deadline::In(absl::Minutes(1));
    TANDEM_RETURN_IF_ERROR(work->SyncGradients());  // from the device copies, if any
    if (pair != nullptr) TANDEM_RETURN_IF_ERROR(work->SumCopyGradients(*pair, d));
    for (Trained& t : trained) {
      TANDEM_RETURN_IF_ERROR(model::SyncGradients(*t.model, *experts));
      TANDEM_RETURN_IF_ERROR(t.opt->Step(t.Params()));
    }
    // Loss of this step: the last stages' partial losses, summed over the world.
    float local = 0;
    for (const auto& [g, l] : work->losses()) local += static_cast<float>(l);
    TANDEM_RETURN_IF_ERROR(comm::PostAndWait(world.AllReduce(&local, &local, 1, comm::DataType::kF32, comm::ReduceOp::kSum), d));
    {
      absl::MutexLock lock(&shared.mu);
      if (step == 0) {
        for (const auto& [g, l] : work->losses()) shared.first_losses[ep_rank][g] = l;
      }
      if (step == std::min(1, steps - 1) && ep_rank == 0) shared.runs[pp_rank] = run;
      if (world_rank == 0) {
        shared.step_loss.push_back(local / n);
        std::printf("step %3d  loss %.6f  (%.1f ms on pipeline rank 0)\n", step, local / n, run.step_us / 1000);
        std::fflush(stdout);
      }
    }
    if (step == 0) {
      TANDEM_RETURN_IF_ERROR(comm::PostAndWait(world.Barrier(), d));
      if (world_rank == 0) {
        absl::MutexLock lock(&shared.mu);
        double worst = 0;
        for (int g = 0; g < n; ++g) {
          double sum = 0;
          for (int e = 0; e < ep; ++e) sum += shared.first_losses[e][g];
          worst = std::max(worst, std::fabs(sum - shared.sequential[g]) / std::max(1e-12, std::fabs(shared.sequential[g])));
        }
        shared.first_step_error = worst;
        // f32 on the CPU: the same sums in another grouping; on the GPU,
        // cuBLAS sums in its own order (model/cuda/gpu_model_test).
        const double bound = device_world != nullptr ? 1e-4 : 1e-5;
        std::printf("          first step vs sequential training (one rank, all experts, CPU): max relative loss "
                    "difference %.2e over %d micro-batches (%s, bound %.0e)\n", worst, n,
                    worst < bound ? "ok" : "MISMATCH", bound);
      }
    }
    // Rebalance: global loads (every rank recorded its own layers and tokens).
    if (every > 0 && (step + 1) % every == 0 && step + 1 < steps) {
      balance::LoadRecorder::Snapshot snap = recorder->TakeSnapshot();
      std::vector<int64_t> loads = snap.window;
      TANDEM_RETURN_IF_ERROR(comm::PostAndWait(
          world.AllReduce(loads.data(), loads.data(), static_cast<int64_t>(loads.size()), comm::DataType::kI64,
                          comm::ReduceOp::kSum),
          d));
      const balance::Weights w = balance::Weights::Int64(loads, snap.num_layers, snap.num_experts);
      TANDEM_ASSIGN_OR_RETURN(balance::PlacementMetrics before, balance::ComputeMetrics(w, placement, ep));
      TANDEM_ASSIGN_OR_RETURN(balance::Placement next,
                              balance::RebalanceExperts(w, placement.num_replicas, 1, 1, ep, {}));
      TANDEM_ASSIGN_OR_RETURN(balance::PlacementMetrics after, balance::ComputeMetrics(w, next, ep));
      for (Trained& t : trained) TANDEM_RETURN_IF_ERROR(model::ApplyPlacement(*t.model, *experts, next));
      placement = std::move(next);
      if (world_rank == 0) {
        absl::MutexLock lock(&shared.mu);
        shared.rebalances.push_back(absl::StrFormat(
            "{\"step\":%d,\"balancedness_before\":%.4f,\"balancedness_after\":%.4f}", step + 1,
            before.balancedness_aggregate, after.balancedness_aggregate));
        std::printf("step %3d  EPLB rebalance: balancedness %.3f -> %.3f (mean/max expert-parallel rank load, %d "
                    "layers); expert weights moved\n", step + 1, before.balancedness_aggregate,
                    after.balancedness_aggregate, snap.num_layers);
      }
    }
    TANDEM_RETURN_IF_ERROR(work->ReloadParameters());  // new values (and experts) to the device copies
  }
  return absl::OkStatus();
}

absl::Status Main() {
  const int pp = absl::GetFlag(FLAGS_pp), ep = absl::GetFlag(FLAGS_ep), n = absl::GetFlag(FLAGS_microbatches);
  const std::string out = absl::GetFlag(FLAGS_out);
  TANDEM_ASSIGN_OR_RETURN(Kind kind, schedule::ParseKind(absl::GetFlag(FLAGS_kind)));
  TANDEM_ASSIGN_OR_RETURN(Schedule compute, schedule::Generate({kind, pp, n}));
  TANDEM_ASSIGN_OR_RETURN(Schedule s, schedule::Lower(compute));
  TANDEM_RETURN_IF_ERROR(schedule::Validate(s));

  model::ModelConfig c;
  c.hidden = absl::GetFlag(FLAGS_hidden);
  c.input_dim = 8;
  c.output_dim = 8;
  c.num_layers = 2 * s.stages - 2;  // two units per stage
  c.num_experts = absl::GetFlag(FLAGS_experts);
  c.top_k = absl::GetFlag(FLAGS_top_k);
  c.moe_inter = 2 * c.hidden;
  c.bias_update_speed = 0.0f;  // the DualPipe copies must stay identical
  c.seed = absl::GetFlag(FLAGS_seed);
  TANDEM_RETURN_IF_ERROR(model::ValidateConfig(c));
  std::printf("tandem demo: %s on %d pipeline x %d expert-parallel ranks (%s backend), %d stages, %d micro-batches\n",
              std::string(schedule::KindName(kind)).c_str(), pp, ep, absl::GetFlag(FLAGS_backend).c_str(), s.stages,
              n);
  std::printf("  model: %d MoE blocks, hidden %d, %d experts (+%d redundant slots), top-%d\n", c.num_layers, c.hidden,
              c.num_experts, absl::GetFlag(FLAGS_extra_slots), c.top_k);

  // Start from an even placement with redundant slots.
  const int layers = model::NumMoeLayers(c), slots = c.num_experts + absl::GetFlag(FLAGS_extra_slots);
  std::vector<int64_t> ones(int64_t{layers} * c.num_experts, 1);
  TANDEM_ASSIGN_OR_RETURN(balance::Placement placement,
                          balance::RebalanceExperts(balance::Weights::Int64(ones, layers, c.num_experts), slots, 1, 1,
                                                    ep, {}));

  Shared shared;
  shared.first_losses.assign(ep, std::vector<double>(n, 0.0));
  shared.runs.resize(pp);
  {
    // The check of the first step: all tokens of a micro-batch on one rank
    // with every expert local, micro-batches in order.
    const int tokens = absl::GetFlag(FLAGS_tokens);
    std::vector<schedule::PipelineData> parts;
    for (int e = 0; e < ep; ++e) parts.push_back(MakeData(c, n, tokens, e, 0, tokens * ep));
    schedule::PipelineData all;
    for (int g = 0; g < n; ++g) {
      std::vector<float> x, y;
      for (const auto& p : parts) {
        x.insert(x.end(), p.inputs[g].span().begin(), p.inputs[g].span().end());
        y.insert(y.end(), p.targets[g].values.span().begin(), p.targets[g].values.span().end());
      }
      all.inputs.push_back(*model::Tensor::FromVector({tokens * ep, c.input_dim}, x));
      model::Target t;
      t.values = *model::Tensor::FromVector({tokens * ep, c.output_dim}, y);
      t.normalizer = tokens * ep;
      all.targets.push_back(std::move(t));
    }
    TANDEM_ASSIGN_OR_RETURN(auto reference, model::Model::Create(c));
    TANDEM_ASSIGN_OR_RETURN(shared.sequential, schedule::Sequential(*reference, all));
  }
  const int world_size = pp * ep;
  comm::MemoryStore store;
  std::vector<std::unique_ptr<comm::Communicator>> world, device_world;
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend == "store") {
    for (int r = 0; r < world_size; ++r) world.push_back(comm::MakeStoreCommunicator(&store, r, world_size, "demo/"));
  } else if (backend == "local") {
    world = comm::CreateLocalGroup(world_size);
#ifdef TANDEM_WITH_CUDA
  } else if (backend == "cuda_local") {
    world = comm::CreateLocalGroup(world_size);
    absl::StatusOr<std::vector<std::unique_ptr<comm::Communicator>>> g = comm::CreateCudaLocalGroup(world_size);
    if (!g.ok()) return g.status();  // names cuda_local and the missing GPU
    device_world = *std::move(g);
#endif
  } else {
#ifdef TANDEM_WITH_CUDA
    return absl::InvalidArgumentError(
        absl::StrFormat("backend: expected local, store or cuda_local, got '%s'", backend));
#else
    return absl::InvalidArgumentError(absl::StrFormat(
        "backend: expected local or store, got '%s' (cuda_local is in the GPU build: bazel run //tools:demo_gpu)",
        backend));
#endif
  }
  const absl::Time start = absl::Now();
  std::vector<absl::Status> status(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      comm::Communicator* device = device_world.empty() ? nullptr : device_world[r].get();
      status[r] = RunRankMain(r, *world[r], device, s, c, placement, shared);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world_size; ++r) {
    if (!status[r].ok()) return absl::Status(status[r].code(), absl::StrCat("rank ", r, ": ", status[r].message()));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  // Bubble per pipeline rank: measured (step minus compute) on the second
  // step, and simulated with the mean measured duration of each action kind.
  schedule::CostModel cost;
  {
    double sum[5] = {}, count[5] = {};
    for (int r = 0; r < pp; ++r) {
      const auto& p = s.programs[r].actions;
      for (size_t i = 0; i < p.size() && i < shared.runs[r].timeline.size(); ++i) {
        if (!schedule::IsCompute(p[i].op)) continue;
        const int k = static_cast<int>(p[i].op);
        sum[k] += shared.runs[r].timeline[i].end - shared.runs[r].timeline[i].start;
        count[k] += 1;
      }
    }
    auto mean = [&](schedule::Op op, double fallback) {
      const int k = static_cast<int>(op);
      return count[k] > 0 ? sum[k] / count[k] / 1000.0 : fallback;  // ms
    };
    cost.f = {mean(schedule::Op::kForward, 1)};
    cost.b = {mean(schedule::Op::kBackward, 2 * cost.f[0])};
    cost.i = {mean(schedule::Op::kBackwardInput, cost.f[0])};
    cost.w = {mean(schedule::Op::kBackwardWeight, cost.f[0])};
    cost.fb = {mean(schedule::Op::kForwardBackward, cost.f[0] + cost.b[0])};
  }
  TANDEM_ASSIGN_OR_RETURN(schedule::SimResult sim, schedule::Simulate(s, {cost}));
  std::printf("per-rank bubble (ms), second step, costs F=%.2f B=%.2f I=%.2f W=%.2f FB=%.2f ms measured:\n",
              cost.f[0], cost.b[0], cost.i[0], cost.w[0], cost.fb[0]);
  std::vector<std::string> ranks_json;
  for (int r = 0; r < pp; ++r) {
    const double measured = (shared.runs[r].step_us - shared.runs[r].compute_us) / 1000;
    std::printf("  pipeline rank %d: simulated %.2f, measured %.2f (step %.2f ms)\n", r, sim.ranks[r].idle, measured,
                shared.runs[r].step_us / 1000);
    ranks_json.push_back(absl::StrFormat("{\"rank\":%d,\"bubble_simulated_ms\":%.3f,\"bubble_measured_ms\":%.3f}", r,
                                         sim.ranks[r].idle, measured));
  }
  std::string mkdir = absl::StrCat("mkdir -p '", out, "'");
  if (std::system(mkdir.c_str()) != 0) return absl::InternalError(absl::StrCat("cannot create ", out));
  {
    std::ofstream svg(out + "/schedule.svg");
    svg << schedule::RenderSvg(s, sim);
    std::ofstream trace(out + "/executor_trace.json");
    trace << schedule::ExecutorChromeTrace(s, shared.runs);
    std::ofstream report(out + "/report.json");
    report << absl::StrFormat(
        "{\"kind\":\"%s\",\"pp\":%d,\"ep\":%d,\"microbatches\":%d,\"steps\":%d,\"seconds\":%.2f,"
        "\"first_step_max_relative_loss_error\":%.3e,\"loss\":[%s],\"rebalances\":[%s],\"bubble\":[%s]}\n",
        schedule::KindName(kind), pp, ep, n, absl::GetFlag(FLAGS_steps), seconds, shared.first_step_error,
        absl::StrJoin(shared.step_loss, ",", [](std::string* o, double v) { absl::StrAppend(o, absl::StrFormat("%.6f", v)); }),
        absl::StrJoin(shared.rebalances, ","), absl::StrJoin(ranks_json, ","));
    if (!report) return absl::InternalError(absl::StrCat("cannot write ", out, "/report.json"));
  }
  std::printf("loss %.4f -> %.4f over %d steps in %.1f s\n", shared.step_loss.front(), shared.step_loss.back(),
              absl::GetFlag(FLAGS_steps), seconds);
  std::printf("wrote %s/schedule.svg (Gantt chart), %s/executor_trace.json (Perfetto), %s/report.json\n",
              out.c_str(), out.c_str(), out.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tandem end-to-end demo: MoE training with a pipeline schedule, EP and EPLB");
  absl::ParseCommandLine(argc, argv);
  const absl::Status s = tandem::Main();
  if (!s.ok()) {
    std::fprintf(stderr, "demo: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
