#include "model/expert_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "balance/placement.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/stage.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::MaxRelativeDifference;
using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int kTokens = 6;  // per rank

ModelConfig Config() {
  ModelConfig c;
  c.input_dim = 6;
  c.hidden = 8;
  c.output_dim = 5;
  c.num_layers = 3;
  c.num_dense_layers = 1;
  c.num_experts = 8;
  c.moe_inter = 6;
  c.top_k = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.seed = 5;
  c.bias_update_speed = 0.01f;
  return c;
}

void RunRanks(int n, const std::function<absl::Status(int, comm::Communicator&)>& fn) {
  std::vector<std::unique_ptr<comm::Communicator>> comms = comm::CreateLocalGroup(n);
  std::vector<absl::Status> status(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { status[r] = fn(r, *comms[r]); });
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < n; ++r) EXPECT_OK(status[r]) << "rank " << r;
}

balance::Placement MakePlacement(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return balance::PlacementFromPhy2Log(static_cast<int>(rows.size()), 8, static_cast<int>(rows[0].size()), flat)
      .value();
}

balance::Placement Identity() { return MakePlacement({{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}}); }
// 12 slots with replicas of hot experts, spread over the ranks.
balance::Placement Replicated() {
  return MakePlacement({{3, 0, 5, 1, 7, 2, 0, 4, 6, 1, 3, 5}, {7, 6, 5, 4, 3, 2, 1, 0, 0, 7, 2, 2}});
}
balance::Placement Other() {
  return MakePlacement({{0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4}, {1, 1, 3, 3, 0, 2, 4, 5, 6, 7, 0, 6}});
}

Tensor Rows(const Tensor& all, int64_t first, int64_t count) {
  Tensor t = Tensor::Zeros({count, all.dim(1)});
  std::memcpy(t.raw(), all.data<float>() + first * all.dim(1), t.bytes());
  return t;
}

// Units 0..L (everything but the head).
absl::StatusOr<Tensor> Trunk(Model& m, const Tensor& x) {
  Tensor h = x;
  for (int u = 0; u + 1 < m.num_units(); ++u) {
    absl::StatusOr<Tensor> next = m.UnitForward(u, h, nullptr);
    if (!next.ok()) return next.status();
    h = *std::move(next);
  }
  return h;
}

struct Reference {
  std::unique_ptr<Model> model;
  Tensor trunk;
  double loss = 0;
};

Reference RunReference(int n, const Tensor& x, const Target& target) {
  Reference ref;
  ref.model = Model::Create(Config()).value();
  ref.trunk = Trunk(*ref.model, x).value();
  auto stage = Stage::Create(ref.model.get(), 0, ref.model->num_units(), {}).value();
  EXPECT_OK(stage->Forward(0, x, &target).status());
  ref.loss = stage->loss(0).value();
  EXPECT_OK(stage->Backward(0, Tensor()).status());
  EXPECT_OK(ref.model->EndStep());
  return ref;
}

struct Worst {
  absl::Mutex mu;
  double trunk = 0, grad = 0;
  void Note(double t, double g) {
    absl::MutexLock lock(&mu);
    trunk = std::max(trunk, t);
    grad = std::max(grad, g);
  }
};

// Outputs and synced gradients of the EP model equal the single-rank
// model's: bit for bit on one rank (identity placement), within 1e-5
// (relative to the largest value of each tensor) on 2 and 4 ranks, with
// replicated experts.
void CheckAgainstReference(int n, const balance::Placement& placement, bool bitwise) {
  const ModelConfig c = Config();
  Tensor x = RandomTensor({n * kTokens, c.input_dim}, 70 + n, 2.0f);
  Target target;
  target.values = RandomTensor({n * kTokens, c.output_dim}, 80 + n);
  Reference ref = RunReference(n, x, target);
  std::vector<double> losses(n);
  Worst worst;
  RunRanks(n, [&](int r, comm::Communicator& comm) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto model, Model::Create(c));
    TANDEM_RETURN_IF_ERROR(DistributeExperts(*model, comm, placement));
    const Tensor xr = Rows(x, r * kTokens, kTokens);
    TANDEM_ASSIGN_OR_RETURN(Tensor trunk, Trunk(*model, xr));
    Target tr;
    tr.values = Rows(target.values, r * kTokens, kTokens);
    tr.normalizer = static_cast<double>(n * kTokens * c.output_dim);  // the global count
    TANDEM_ASSIGN_OR_RETURN(auto stage, Stage::Create(model.get(), 0, model->num_units(), {}));
    TANDEM_RETURN_IF_ERROR(stage->Forward(0, xr, &tr).status());
    TANDEM_ASSIGN_OR_RETURN(losses[r], stage->loss(0));
    TANDEM_RETURN_IF_ERROR(stage->Backward(0, Tensor()).status());
    TANDEM_RETURN_IF_ERROR(SyncGradients(*model, comm));
    TANDEM_RETURN_IF_ERROR(model->EndStep());
    const float* want_trunk = ref.trunk.data<float>() + r * kTokens * c.hidden;
    double trunk_diff = MaxRelativeDifference(trunk.data<float>(), want_trunk, trunk.numel());
    if (bitwise) {
      EXPECT_EQ(std::memcmp(trunk.raw(), want_trunk, trunk.bytes()), 0) << "rank " << r;
    }
    double grad_diff = 0;
    std::vector<Parameter*> mine = model->ReplicatedParameters();
    std::vector<Parameter*> theirs = ref.model->ReplicatedParameters();
    for (size_t i = 0; i < mine.size(); ++i) {
      EXPECT_EQ(mine[i]->name, theirs[i]->name);
      grad_diff = std::max(grad_diff, MaxRelativeDifference(mine[i]->grad.data<float>(), theirs[i]->grad.data<float>(),
                                                            mine[i]->grad.numel()));
      if (bitwise) {
        EXPECT_EQ(std::memcmp(mine[i]->grad.raw(), theirs[i]->grad.raw(), mine[i]->grad.bytes()), 0);
      }
    }
    std::vector<MoeLayer*> layers = model->moe_layers();
    for (size_t l = 0; l < layers.size(); ++l) {
      EXPECT_EQ(std::memcmp(layers[l]->router().bias().raw(), ref.model->moe_layers()[l]->router().bias().raw(),
                            c.num_experts * 4),
                0)
          << "bias updates use the global counts";
      for (size_t j = 0; j < layers[l]->slot_expert().size(); ++j) {
        const int e = layers[l]->slot_expert()[j];
        std::vector<Parameter*> p = layers[l]->expert(static_cast<int>(j)).parameters();
        std::vector<Parameter*> q = ref.model->moe_layers()[l]->expert(e).parameters();
        for (size_t i = 0; i < p.size(); ++i) {
          EXPECT_EQ(p[i]->name, q[i]->name);
          grad_diff = std::max(
              grad_diff, MaxRelativeDifference(p[i]->grad.data<float>(), q[i]->grad.data<float>(), p[i]->grad.numel()));
          if (bitwise) {
            EXPECT_EQ(std::memcmp(p[i]->grad.raw(), q[i]->grad.raw(), p[i]->grad.bytes()), 0);
          }
        }
      }
    }
    worst.Note(trunk_diff, grad_diff);
    return absl::OkStatus();
  });
  double loss = 0;
  for (double l : losses) loss += l;
  if (bitwise) {
    EXPECT_EQ(loss, ref.loss);
  } else {
    EXPECT_NEAR(loss, ref.loss, 1e-6 * std::fabs(ref.loss));
  }
  std::printf("EP n=%d: max relative difference to single rank: outputs %.3g, gradients %.3g\n", n, worst.trunk,
              worst.grad);
  EXPECT_LE(worst.trunk, 1e-5);
  EXPECT_LE(worst.grad, 1e-5);
}

TEST(ExpertParallelTest, OneRankIsBitwiseEqual) { CheckAgainstReference(1, Identity(), true); }
TEST(ExpertParallelTest, OneRankWithReplicas) { CheckAgainstReference(1, Replicated(), false); }
TEST(ExpertParallelTest, TwoRanksMatch) { CheckAgainstReference(2, Replicated(), false); }
TEST(ExpertParallelTest, FourRanksMatch) { CheckAgainstReference(4, Replicated(), false); }
TEST(ExpertParallelTest, FourRanksIdentityPlacement) { CheckAgainstReference(4, Identity(), false); }

// Bits of one expert replica: values then SGD momentum.
std::vector<float> Bits(SwiGlu& e) {
  std::vector<float> out;
  for (Parameter* p : e.parameters()) {
    out.insert(out.end(), p->value.data<float>(), p->value.data<float>() + p->value.numel());
    out.insert(out.end(), p->state[0].begin(), p->state[0].end());
  }
  return out;
}

// After a synced SGD step every replica of an expert is identical; a new
// placement moves weights and momentum bit for bit; a checkpoint saved
// under one placement loads on one rank and under another placement.
TEST(ExpertParallelTest, RebalanceAndCheckpointMoveStateExactly) {
  for (int n : {2, 4}) {
    const ModelConfig c = Config();
    const std::string path = ::testing::TempDir() + "/ep" + std::to_string(n) + ".safetensors";
    absl::Mutex mu;
    std::map<std::pair<int, int>, std::vector<float>> table;  // (layer, expert) -> bits
    std::map<std::string, std::vector<float>> dense;          // rank 0's replicated values
    RunRanks(n, [&](int r, comm::Communicator& comm) -> absl::Status {
      TANDEM_ASSIGN_OR_RETURN(auto model, Model::Create(c));
      TANDEM_RETURN_IF_ERROR(DistributeExperts(*model, comm, Replicated()));
      Sgd sgd({0.1f, 0.9f, 0.0f});
      for (int step = 0; step < 2; ++step) {
        Target t;
        t.values = RandomTensor({kTokens, c.output_dim}, 90 + r + 10 * step);
        TANDEM_ASSIGN_OR_RETURN(auto stage, Stage::Create(model.get(), 0, model->num_units(), {}));
        TANDEM_RETURN_IF_ERROR(
            stage->Forward(0, RandomTensor({kTokens, c.input_dim}, 95 + r + 10 * step, 2.0f), &t).status());
        TANDEM_RETURN_IF_ERROR(stage->Backward(0, Tensor()).status());
        TANDEM_RETURN_IF_ERROR(SyncGradients(*model, comm));
        TANDEM_RETURN_IF_ERROR(sgd.Step(model->Parameters()));
        model->ZeroGrad();
        TANDEM_RETURN_IF_ERROR(model->EndStep());
      }
      std::vector<MoeLayer*> layers = model->moe_layers();
      {
        absl::MutexLock lock(&mu);
        for (size_t l = 0; l < layers.size(); ++l) {
          for (size_t j = 0; j < layers[l]->slot_expert().size(); ++j) {
            const std::pair<int, int> key(static_cast<int>(l), layers[l]->slot_expert()[j]);
            std::vector<float> bits = Bits(layers[l]->expert(static_cast<int>(j)));
            auto [it, inserted] = table.emplace(key, bits);
            if (!inserted) {
              EXPECT_EQ(it->second, bits) << "replicas diverged: layer " << l << " expert " << key.second;
            }
          }
        }
        if (r == 0) {
          for (Parameter* p : model->ReplicatedParameters()) {
            dense[p->name].assign(p->value.data<float>(), p->value.data<float>() + p->value.numel());
          }
        }
      }
      TANDEM_RETURN_IF_ERROR(SaveCheckpointEp(*model, &sgd, comm, path));
      TANDEM_RETURN_IF_ERROR(ApplyPlacement(*model, comm, Other()));
      for (size_t l = 0; l < layers.size(); ++l) {
        for (size_t j = 0; j < layers[l]->slot_expert().size(); ++j) {
          const int e = layers[l]->slot_expert()[j];
          absl::MutexLock lock(&mu);
          EXPECT_EQ(Bits(layers[l]->expert(static_cast<int>(j))), table.at({static_cast<int>(l), e}))
              << "moved expert " << e << " on rank " << r;
        }
      }
      // A fresh EP model under the other placement loads the checkpoint.
      TANDEM_ASSIGN_OR_RETURN(auto fresh, Model::Create(c));
      TANDEM_RETURN_IF_ERROR(DistributeExperts(*fresh, comm, Other()));
      Sgd sgd2({0.1f, 0.9f, 0.0f});
      TANDEM_RETURN_IF_ERROR(LoadCheckpointEp(*fresh, &sgd2, path));
      EXPECT_EQ(sgd2.steps(), 2);
      std::vector<MoeLayer*> fl = fresh->moe_layers();
      for (size_t l = 0; l < fl.size(); ++l) {
        for (size_t j = 0; j < fl[l]->slot_expert().size(); ++j) {
          absl::MutexLock lock(&mu);
          EXPECT_EQ(Bits(fl[l]->expert(static_cast<int>(j))), table.at({static_cast<int>(l), fl[l]->slot_expert()[j]}));
        }
      }
      return absl::OkStatus();
    });
    // The same file on a single rank: every logical expert present, exact.
    ASSERT_OK_AND_ASSIGN(auto single, Model::Create(c));
    Sgd sgd({0.1f, 0.9f, 0.0f});
    ASSERT_OK(LoadCheckpoint(*single, &sgd, path));
    for (size_t l = 0; l < single->moe_layers().size(); ++l) {
      for (int e = 0; e < c.num_experts; ++e) {
        EXPECT_EQ(Bits(single->moe_layers()[l]->expert(e)), table.at({static_cast<int>(l), e}));
      }
    }
    for (Parameter* p : single->ReplicatedParameters()) {
      EXPECT_EQ(std::vector<float>(p->value.data<float>(), p->value.data<float>() + p->value.numel()),
                dense.at(p->name));
    }
  }
}

// Must-fail twin: without SyncGradients the expert replicas' gradients are
// partial and differ from the single-rank gradients.
TEST(ExpertParallelTest, MissingGradientSyncIsDetected) {
  const ModelConfig c = Config();
  const int n = 2;
  Tensor x = RandomTensor({n * kTokens, c.input_dim}, 72, 2.0f);
  Target target;
  target.values = RandomTensor({n * kTokens, c.output_dim}, 82);
  Reference ref = RunReference(n, x, target);
  Worst worst;
  RunRanks(n, [&](int r, comm::Communicator& comm) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto model, Model::Create(c));
    TANDEM_RETURN_IF_ERROR(DistributeExperts(*model, comm, Replicated()));
    Target tr;
    tr.values = Rows(target.values, r * kTokens, kTokens);
    tr.normalizer = static_cast<double>(n * kTokens * c.output_dim);
    TANDEM_ASSIGN_OR_RETURN(auto stage, Stage::Create(model.get(), 0, model->num_units(), {}));
    TANDEM_RETURN_IF_ERROR(stage->Forward(0, Rows(x, r * kTokens, kTokens), &tr).status());
    TANDEM_RETURN_IF_ERROR(stage->Backward(0, Tensor()).status());
    double g = 0;
    std::vector<Parameter*> mine = model->ReplicatedParameters();
    std::vector<Parameter*> theirs = ref.model->ReplicatedParameters();
    for (size_t i = 0; i < mine.size(); ++i) {
      g = std::max(
          g, MaxRelativeDifference(mine[i]->grad.data<float>(), theirs[i]->grad.data<float>(), mine[i]->grad.numel()));
    }
    worst.Note(0, g);
    return absl::OkStatus();
  });
  EXPECT_GT(worst.grad, 1e-3);
}

// EpLayoutOf(): what device paths read. Expected values come straight from
// the placement's phy2log rows: replicas of e are its slots in ascending
// order, and (token t, k) goes to replica t mod count; after a move the
// layout is the new placement's.
TEST(ExpertParallelTest, LayoutOfADistributedLayer) {
  RunRanks(2, [&](int r, comm::Communicator& comm) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto model, Model::Create(Config()));
    EXPECT_EQ(EpLayoutOf(*model->moe_layers()[0]), nullptr);
    TANDEM_RETURN_IF_ERROR(DistributeExperts(*model, comm, Replicated()));
    const balance::Placement placements[] = {Replicated(), Other()};
    for (int move = 0; move < 2; ++move) {
      const balance::Placement& p = placements[move];
      if (move == 1) TANDEM_RETURN_IF_ERROR(ApplyPlacement(*model, comm, p));
      for (int l = 0; l < 2; ++l) {
        const EpLayout* lay = EpLayoutOf(*model->moe_layers()[l]);
        if (lay == nullptr) return absl::InternalError("no layout");
        EXPECT_EQ(lay->ranks, 2);
        EXPECT_EQ(lay->rank, r);
        EXPECT_EQ(lay->num_slots, 12);
        EXPECT_EQ(lay->per_rank, 6);
        const std::vector<int64_t> row(p.phy2log.begin() + l * 12, p.phy2log.begin() + (l + 1) * 12);
        EXPECT_EQ(lay->phy2log, row);
        const int k = 3, tokens = 7;
        std::vector<int32_t> idx;
        for (int i = 0; i < tokens * k; ++i) idx.push_back((5 * i + l) % 8);
        const std::vector<int64_t> slots = lay->SlotsOf(idx, k);
        for (int i = 0; i < tokens * k; ++i) {
          std::vector<int64_t> mine;
          for (int64_t q = 0; q < 12; ++q) {
            if (row[q] == idx[i]) mine.push_back(q);
          }
          EXPECT_EQ(slots[i], mine[(i / k) % mine.size()]) << "layer " << l << " entry " << i;
        }
      }
    }
    return absl::OkStatus();
  });
}

TEST(ExpertParallelTest, BadPlacementRejected) {
  RunRanks(2, [&](int r, comm::Communicator& comm) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto model, Model::Create(Config()));
    balance::Placement one_layer =
        balance::PlacementFromPhy2Log(1, 8, 8, std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}).value();
    EXPECT_THAT(DistributeExperts(*model, comm, one_layer),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("placement: expected 2 layers x 8 experts (the model's MoE layers), got 1 x 8")));
    EXPECT_THAT(ApplyPlacement(*model, comm, Identity()),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not distributed")));
    TANDEM_RETURN_IF_ERROR(DistributeExperts(*model, comm, Identity()));
    EXPECT_THAT(DistributeExperts(*model, comm, Identity()),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already distributed")));
    return absl::OkStatus();
  });
}

}  // namespace
}  // namespace tandem::model
