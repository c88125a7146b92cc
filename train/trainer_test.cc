#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/emulated/emulated_network.h"
#include "comm/local/local_communicator.h"
#include "comm/store_backend/store_communicator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "model/stage.h"
#include "schedule/generators/generate.h"
#include "train/data.h"
#include "train/testing/step_check.h"

namespace tandem::train {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int kTokens = 6;

TrainerOptions Options(schedule::Kind kind, int pp, int dp, int ep) {
  TrainerOptions o;
  o.kind = kind;
  o.pp = pp;
  o.dp = dp;
  o.ep = ep;
  o.microbatches = 4;
  o.model.num_layers = 2;  // 4 units: two per stage on 2 stages
  o.model.num_experts = 4;
  o.model.seed = 5;
  o.model.bias_update_speed = 0.0f;
  o.extra_slots = 2;
  return o;
}

// Replica `replica`'s share of step `step`'s global batch (kTokens samples
// per micro-batch on each data-parallel rank).
PipelineData Data(const TrainerOptions& o, int replica, int step) {
  return TeacherData(o.model, step, o.microbatches, kTokens * o.dp, o.dp, replica).value();
}

// The whole global batch of a step, as sequential training sees it.
PipelineData GlobalBatch(const TrainerOptions& o, int step) {
  return TeacherData(o.model, step, o.microbatches, kTokens * o.dp).value();
}

// testing::CalDiff over every value of two name -> values maps; 1 when
// they hold other names or sizes.
double GradientDistance(const std::map<std::string, std::vector<float>>& a,
                        const std::map<std::string, std::vector<float>>& b) {
  std::vector<float> x, y;
  for (const auto& [name, values] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.size() != values.size()) return 1;
    x.insert(x.end(), values.begin(), values.end());
    y.insert(y.end(), it->second.begin(), it->second.end());
  }
  return testing::CalDiff(x, y);
}

// The largest |a - b| relative to the largest |b| of a tensor.
double RelativeDiff(absl::Span<const float> a, absl::Span<const float> b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(double{a[i]} - b[i]));
    scale = std::max(scale, std::fabs(double{b[i]}));
  }
  return scale == 0 ? diff : diff / scale;
}

struct Result {
  std::vector<double> loss;  // per step, from rank 0
  // After the last step: the host model of each (pp_rank, stage, direction)
  // copy's units as values, by parameter name (first local replica), and
  // the gradients of the last step.
  std::map<std::string, std::vector<float>> params;
  std::map<std::string, std::vector<float>> grads;
};

// Trains `steps` steps on a group of pp * dp ranks (threads), through an
// emulated network when `network` is set, then saves a checkpoint into
// `save_dir` when it is not empty (every rank's result in *saved).
Result Train(const TrainerOptions& o, int steps, bool store_backend, const comm::NetworkModel* network = nullptr,
             const std::string& save_dir = "", CheckpointInfo* saved = nullptr) {
  const int world_size = o.pp * o.dp;
  comm::MemoryStore memory;
  std::vector<std::unique_ptr<comm::Communicator>> world;
  if (store_backend) {
    for (int r = 0; r < world_size; ++r) world.push_back(comm::MakeStoreCommunicator(&memory, r, world_size));
  } else {
    world = comm::CreateLocalGroup(world_size);
  }
  if (network != nullptr) world = comm::EmulatedNetwork(*network).Wrap(std::move(world));
  Result out;
  std::mutex mu;
  absl::Status s = RunOnThreads(world_size, [&](int r) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto t, Trainer::Create(o, *world[r]));
    const int replica = t->mesh().dp_rank;
    TANDEM_RETURN_IF_ERROR(t->Run(
        steps, [&](int step) { return Data(o, replica, step); },
        [&](const StepStats& st) {
          if (r == 0) out.loss.push_back(st.loss);
        }));
    if (!save_dir.empty()) {
      TANDEM_ASSIGN_OR_RETURN(CheckpointInfo info, t->SaveCheckpoint(save_dir, 2));
      std::lock_guard<std::mutex> lock(mu);
      if (saved->fingerprint.empty()) *saved = info;
      EXPECT_EQ(info.fingerprint, saved->fingerprint);  // every rank returns rank 0's result
    }
    std::lock_guard<std::mutex> lock(mu);
    for (auto [st, d] : t->work().copies()) {
      model::Model* m = t->work().model(st, d);
      for (int u = t->work().bounds()[st]; u < t->work().bounds()[st + 1]; ++u) {
        for (model::Parameter* p : m->UnitParameters(u)) {
          if (out.params.count(p->name)) continue;
          out.params[p->name].assign(p->value.span().begin(), p->value.span().end());
          out.grads[p->name].assign(p->grad.span().begin(), p->grad.span().end());
        }
      }
    }
    return absl::OkStatus();
  });
  EXPECT_OK(s);
  return out;
}

// Sequential training of the same model on the global batches (by default;
// `data` otherwise): losses per step, the parameters after `steps` AdamW
// steps and the last step's gradients.
Result Sequential(const TrainerOptions& o, int steps, std::function<PipelineData(int step)> data = nullptr) {
  if (data == nullptr) data = [&o](int step) { return GlobalBatch(o, step); };
  Result out;
  auto m = model::Model::Create(o.model).value();
  model::AdamW opt(o.adamw);
  for (int step = 0; step < steps; ++step) {
    m->ZeroGrad();
    std::vector<double> losses = train::Sequential(*m, data(step)).value();
    double sum = 0;
    for (double l : losses) sum += static_cast<float>(l);
    out.loss.push_back(sum);
    out.grads.clear();
    for (model::Parameter* p : m->Parameters()) out.grads[p->name].assign(p->grad.span().begin(), p->grad.span().end());
    EXPECT_OK(opt.Step(m->Parameters()));
  }
  for (model::Parameter* p : m->Parameters())
    out.params[p->name].assign(p->value.span().begin(), p->value.span().end());
  return out;
}

// Two steps of the trainer (pipeline x expert parallelism, AdamW, expert
// replicas) against sequential training on the same tokens: losses and
// every parameter within the expert-parallel bound of model/README.md.
TEST(TrainerTest, TrainingMatchesSequentialTraining) {
  for (schedule::Kind kind : {schedule::Kind::k1F1B, schedule::Kind::kDualPipe, schedule::Kind::kZBV}) {
    SCOPED_TRACE(schedule::KindName(kind));
    const TrainerOptions o = Options(kind, 2, 2, 2);
    const Result got = Train(o, 2, /*store_backend=*/false);
    const Result want = Sequential(o, 2);
    ASSERT_EQ(got.loss.size(), 2u);
    for (int step = 0; step < 2; ++step) EXPECT_NEAR(got.loss[step], want.loss[step], 1e-5 * want.loss[step]);
    // Every parameter the trainer holds (experts by logical name).
    ASSERT_FALSE(got.params.empty());
    for (const auto& [name, values] : got.params) {
      ASSERT_TRUE(want.params.count(name)) << name;
      EXPECT_LT(RelativeDiff(values, want.params.at(name)), 1e-5) << name;
    }
    // Must-fail twin: one more sequential step moves the parameters well
    // beyond the bound.
    const Result further = Sequential(o, 3);
    double worst = 0;
    for (const auto& [name, values] : got.params)
      worst = std::max(worst, RelativeDiff(values, further.params.at(name)));
    EXPECT_GT(worst, 1e-3);
  }
}

// PP x DP meshes with EP inside DP, every kind: one step's gradients (dense
// summed over DP and DualPipe's copies, experts over every replica in every
// EP group) equal sequential training's on the global batch, and the loss
// is the global batch's. Must-fail twin: the same distance to the gradient
// that lacks one data-parallel replica's samples (what a replica left out
// of the sum gives) is far above the bound.
TEST(TrainerTest, MeshGradientsMatchSequentialTraining) {
  struct Shape {
    int pp, dp, ep;
  };
  for (const Shape& shape : {Shape{2, 4, 2}, Shape{4, 2, 2}}) {
    for (schedule::Kind kind :
         {schedule::Kind::kGPipe, schedule::Kind::k1F1B, schedule::Kind::kInterleaved1F1B, schedule::Kind::kZB1P,
          schedule::Kind::kZBV, schedule::Kind::kDualPipe, schedule::Kind::kDualPipeV}) {
      SCOPED_TRACE(
          absl::StrFormat("%s on %d PP x %d DP (EP %d)", schedule::KindName(kind), shape.pp, shape.dp, shape.ep));
      TrainerOptions o = Options(kind, shape.pp, shape.dp, shape.ep);
      o.microbatches = 2 * shape.pp;
      o.model.num_layers = 2 * shape.pp - 2;  // a unit per stage of the V-shaped kinds
      const Result got = Train(o, 1, /*store_backend=*/false);
      const Result want = Sequential(o, 1);
      ASSERT_EQ(got.loss.size(), 1u);
      EXPECT_NEAR(got.loss[0], want.loss[0], 1e-5 * want.loss[0]);
      ASSERT_EQ(got.grads.size(), want.grads.size());  // every parameter somewhere
      EXPECT_LT(GradientDistance(got.grads, want.grads), 1e-10);
      const Result partial = Sequential(o, 1, [&](int step) {
        std::vector<PipelineData> parts;
        for (int r = 0; r + 1 < o.dp; ++r) parts.push_back(Data(o, r, step));
        return ConcatTokens(parts).value();
      });
      EXPECT_GT(GradientDistance(got.grads, partial.grads), 1e-4);
    }
  }
}

// Stage bounds from the partitioner: a pipeline rank at half speed gets
// fewer units, the step still equals sequential training, and a memory cap
// nothing fits is refused with the estimate (the twin: a cap that fits).
TEST(TrainerTest, PartitionFromSpeedsAndMemoryCap) {
  TrainerOptions o = Options(schedule::Kind::k1F1B, 2, 2, 2);
  o.model.num_layers = 6;  // 8 units
  o.rank_speed = {1.0, 0.5};
  o.unit_costs.assign(8, 1.0);
  auto world = comm::CreateLocalGroup(4);
  std::vector<int> bounds;
  ASSERT_OK(RunOnThreads(4, [&](int r) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto t, Trainer::Create(o, *world[r]));
    if (r == 0) bounds = t->work().bounds();
    return absl::OkStatus();
  }));
  ASSERT_EQ(bounds.size(), 3u);
  EXPECT_LT(bounds[2] - bounds[1], bounds[1] - bounds[0]);  // the slow rank's stage is smaller
  const Result got = Train(o, 1, false);
  EXPECT_LT(GradientDistance(got.grads, Sequential(o, 1).grads), 1e-10);

  o.tokens = kTokens;
  o.memory_cap_bytes = 1000;
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("memory cap 9.313e-07 GiB per rank")));
  o.bounds = {0, 4, 8};
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("pipeline rank 0 needs an estimated")));
  o.memory_cap_bytes = 1e9;
  o.bounds.clear();
  ASSERT_OK(RunOnThreads(4, [&](int r) { return Trainer::Create(o, *world[r]).status(); }));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Checkpoint and resume: resuming on the same mesh continues with the same
// bits as never stopping; the file loaded onto another mesh (DualPipe 2 PP x
// 2 DP -> 1F1B 2 PP x 4 DP, same EP) and saved again is bit-identical, and
// training there stays within the expert-parallel bound; corrupt files and
// other configs are refused naming the problem.
TEST(TrainerTest, CheckpointResumesOnAnyMesh) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp == nullptr ? "/tmp" : tmp) + "/trainer_ckpt";
  std::filesystem::remove_all(dir);
  TrainerOptions o = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  const TrainerOptions fresh = o;
  CheckpointInfo saved, again;
  const Result straight = Train(o, 4, false);
  Train(o, 2, false, nullptr, dir, &saved);
  ASSERT_EQ(saved.path, dir + "/step-2");
  o.resume_from = saved.path;
  const Result resumed = Train(o, 2, false);
  ASSERT_EQ(resumed.loss.size(), 2u);
  EXPECT_EQ(resumed.loss[0], straight.loss[2]);
  EXPECT_EQ(resumed.loss[1], straight.loss[3]);
  EXPECT_EQ(resumed.params, straight.params);

  TrainerOptions other = Options(schedule::Kind::k1F1B, 2, 4, 2);
  other.microbatches = 2;  // the same global batch of 48 samples
  other.resume_from = saved.path;
  const std::string dir2 = dir + "_other";
  std::filesystem::remove_all(dir2);
  Train(other, 0, false, nullptr, dir2, &again);
  EXPECT_EQ(again.fingerprint, saved.fingerprint);
  EXPECT_EQ(ReadBytes(CheckpointFile(again.path)), ReadBytes(CheckpointFile(saved.path)));
  const Result moved = Train(other, 1, false);
  const Result three = Train(fresh, 3, false);
  ASSERT_EQ(moved.loss.size(), 1u);
  EXPECT_NEAR(moved.loss[0], straight.loss[2], 1e-5 * straight.loss[2]);
  for (const auto& [name, values] : moved.params) {
    ASSERT_TRUE(three.params.count(name)) << name;
    EXPECT_LT(RelativeDiff(values, three.params.at(name)), 1e-5) << name;
  }

  auto world = comm::CreateLocalGroup(4);
  const std::string file = CheckpointFile(saved.path);
  const std::string bytes = ReadBytes(file);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("safetensors")));
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  TrainerOptions wider = o;
  wider.model.hidden = o.model.hidden + 8;
  EXPECT_THAT(Trainer::Create(wider, *world[0]).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("written for model config")));
  wider.resume_from = dir + "/step-99";
  EXPECT_THAT(Trainer::Create(wider, *world[0]).status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("step-99")));
}

// A checkpoint between two rebalances holds the load recorder's window, so
// the next rebalance after resuming moves the same experts: the same bits
// as never stopping (rebalances after steps 2 and 4, checkpoint at 3).
TEST(TrainerTest, ResumeBetweenRebalancesKeepsTheLoadWindow) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp == nullptr ? "/tmp" : tmp) + "/window_ckpt";
  std::filesystem::remove_all(dir);
  TrainerOptions o = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  o.rebalance_every = 2;
  const Result straight = Train(o, 5, false);
  CheckpointInfo saved;
  Train(o, 3, false, nullptr, dir, &saved);
  o.resume_from = saved.path;
  const Result resumed = Train(o, 2, false);
  ASSERT_EQ(resumed.loss.size(), 2u);
  EXPECT_EQ(resumed.loss[1], straight.loss[4]);
  EXPECT_EQ(resumed.params, straight.params);
  // The twin: rebalancing on other loads (another interval) moves other
  // experts, and the bits differ.
  o.resume_from.clear();
  o.rebalance_every = 3;
  EXPECT_NE(Train(o, 5, false).params, straight.params);
}

// The store backend gives the same bits as threads.
TEST(TrainerTest, StoreBackendGivesTheSameBits) {
  const TrainerOptions o = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  const Result local = Train(o, 2, false);
  const Result store = Train(o, 2, true);
  EXPECT_EQ(local.loss, store.loss);
  EXPECT_EQ(local.params, store.params);
}

// Rebalancing moves experts between steps and training goes on: the loss
// after it stays within the bound of a run that never rebalanced.
TEST(TrainerTest, RebalanceBetweenStepsKeepsTraining) {
  TrainerOptions o = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  const Result plain = Train(o, 3, false);
  o.rebalance_every = 1;
  const Result rebalanced = Train(o, 3, false);
  ASSERT_EQ(rebalanced.loss.size(), 3u);
  for (int step = 0; step < 3; ++step) EXPECT_NEAR(rebalanced.loss[step], plain.loss[step], 1e-5 * plain.loss[step]);
}

// Overlapping the expert-parallel exchanges with compute changes when work
// runs, not what it computes: every kind trains to the same bits with and
// without overlap, also through an emulated network.
TEST(TrainerTest, OverlapGivesTheSameBitsForEveryKind) {
  comm::NetworkModel net;
  net.other_node = {50, 5};
  for (schedule::Kind kind :
       {schedule::Kind::kGPipe, schedule::Kind::k1F1B, schedule::Kind::kInterleaved1F1B, schedule::Kind::kZB1P,
        schedule::Kind::kZBV, schedule::Kind::kDualPipe, schedule::Kind::kDualPipeV}) {
    SCOPED_TRACE(schedule::KindName(kind));
    TrainerOptions o = Options(kind, 2, 2, 2);
    o.overlap = false;
    const Result serial = Train(o, 2, false);
    o.overlap = true;
    const Result overlapped = Train(o, 2, false);
    EXPECT_EQ(overlapped.loss, serial.loss);
    EXPECT_EQ(overlapped.params, serial.params);
    const Result emulated = Train(o, 2, false, &net);
    EXPECT_EQ(emulated.loss, serial.loss);
    EXPECT_EQ(emulated.params, serial.params);
  }
  // Must-fail twin: the comparison sees the f32 rounding of another expert
  // placement (more replicas regroup the sums).
  TrainerOptions o = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  const Result two = Train(o, 2, false);
  o.extra_slots = 4;
  const Result four = Train(o, 2, false);
  EXPECT_NE(two.params, four.params);
}

TEST(TrainerTest, BadOptionsAreRefusedNamingThem) {
  auto world = comm::CreateLocalGroup(1);
  TrainerOptions o = Options(schedule::Kind::k1F1B, 2, 2, 2);
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pp 2 x dp 2")));
  auto four = comm::CreateLocalGroup(4);
  o = Options(schedule::Kind::k1F1B, 1, 4, 3);
  EXPECT_THAT(Trainer::Create(o, *four[0]).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ep 3 does not divide dp 4")));
  o = Options(schedule::Kind::k1F1B, 1, 1, 0);
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ep 0")));
  o = Options(schedule::Kind::k1F1B, 1, 1, 1);
  o.model.top_k = 9;
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  o = Options(schedule::Kind::kDualPipe, 1, 1, 1);
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("even")));
  o = Options(schedule::Kind::k1F1B, 1, 1, 1);
  o.bounds = {0, 4};
  o.model.num_layers = 4;
  EXPECT_THAT(Trainer::Create(o, *world[0]).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bounds")));
}

// Regression: a step whose micro-batches had no tokens (demo --tokens=0)
// stalled for a minute; data of the wrong shape is refused naming the
// micro-batch, before anything runs.
TEST(TrainerTest, BadDataIsRefusedNamingTheMicroBatch) {
  auto world = comm::CreateLocalGroup(1);
  const TrainerOptions o = Options(schedule::Kind::k1F1B, 1, 1, 1);
  ASSERT_OK_AND_ASSIGN(auto t, Trainer::Create(o, *world[0]));
  PipelineData empty = TeacherData(o.model, 0, o.microbatches, 0).value();
  EXPECT_THAT(t->Step(empty).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("micro-batch 0: expected inputs [T >= 1, 8]")));
  PipelineData narrow = Data(o, 0, 0);
  narrow.inputs[2] = model::Tensor::Zeros({kTokens, 3});
  EXPECT_THAT(t->Step(narrow).status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("micro-batch 2: expected inputs [T >= 1, 8], got [6, 3]")));
  PipelineData mismatched = Data(o, 0, 0);
  mismatched.targets[1].values = model::Tensor::Zeros({kTokens + 1, o.model.output_dim});
  EXPECT_THAT(t->Step(mismatched).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("micro-batch 1: expected targets")));
  EXPECT_OK(t->Step(Data(o, 0, 0)).status());  // the twin: good data steps
}

// The estimate covers what the trainers hold for certain: every stage copy
// (counted from the schedule's placement) with value, gradient and two
// AdamW moments in f32; activations grow with micro-batches x tokens.
TEST(TrainerTest, MemoryEstimateCoversTheStageCopies) {
  for (schedule::Kind kind : {schedule::Kind::kDualPipe, schedule::Kind::k1F1B, schedule::Kind::kZBV}) {
    const TrainerOptions o = Options(kind, 2, 2, 2);
    ASSERT_OK_AND_ASSIGN(schedule::Schedule s, schedule::Generate({o.kind, o.pp, o.microbatches}));
    int copies = 0;
    for (int d = 0; d < s.directions; ++d) {
      for (int st = 0; st < s.stages; ++st) copies += s.RankOf(d, st) >= 0 ? o.dp : 0;
    }
    ASSERT_OK_AND_ASSIGN(const double bytes, EstimateMemoryBytes(o, 6));
    EXPECT_GE(bytes, 16.0 * copies * model::NumParameters(o.model)) << schedule::KindName(kind);
    ASSERT_OK_AND_ASSIGN(const double more_tokens, EstimateMemoryBytes(o, 12));
    EXPECT_GT(more_tokens, bytes);
  }
  TrainerOptions bad = Options(schedule::Kind::kDualPipe, 2, 2, 2);
  bad.microbatches = 3;  // DualPipe needs an even count
  EXPECT_THAT(EstimateMemoryBytes(bad, 6).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("even")));
}

}  // namespace
}  // namespace tandem::train
