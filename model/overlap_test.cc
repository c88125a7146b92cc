// Overlap of expert-parallel communication with compute: the order of an
// F&B pair's phases (independent of timing), the same bits with and without
// overlap, and a rank that stalls with an exchange in flight.
#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "balance/placement.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/emulated/emulated_network.h"
#include "comm/local/local_communicator.h"
#include "comm/overlap/phase_trace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/expert_parallel.h"
#include "model/stage.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;
using Kind = comm::PhaseEvent::Kind;

constexpr int kRanks = 2, kTokens = 6;

// A dense block and two MoE blocks; 12 slots with replicas over 2 ranks.
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
  c.seed = 5;
  return c;
}

balance::Placement Placement() {
  const std::vector<int64_t> phy2log = {3, 0, 5, 1, 7, 2, 0, 4, 6, 1, 3, 5, 7, 6, 5, 4, 3, 2, 1, 0, 0, 7, 2, 2};
  return balance::PlacementFromPhy2Log(2, 8, 12, phy2log).value();
}

struct Rank {
  std::unique_ptr<Model> model;
  std::unique_ptr<Stage> stage;
  comm::PhaseTrace trace;
  Tensor x[2];
  Target t[2];
};

// Rank r's model with distributed experts, one stage over every unit, and
// two micro-batches of its own tokens.
absl::StatusOr<std::unique_ptr<Rank>> MakeRank(int r, comm::Communicator& comm, bool overlap) {
  auto rank = std::make_unique<Rank>();
  const ModelConfig c = Config();
  TANDEM_ASSIGN_OR_RETURN(rank->model, Model::Create(c));
  EpOptions ep;
  ep.timeout = absl::Seconds(2);
  TANDEM_RETURN_IF_ERROR(DistributeExperts(*rank->model, comm, Placement(), ep));
  Stage::Options o;
  o.phases.overlap = overlap;
  o.phases.trace = &rank->trace;
  TANDEM_ASSIGN_OR_RETURN(rank->stage, Stage::Create(rank->model.get(), 0, rank->model->num_units(), o));
  for (int mb = 0; mb < 2; ++mb) {
    rank->x[mb] = RandomTensor({kTokens, c.input_dim}, 100 * r + mb, 2.0f);
    rank->t[mb].values = RandomTensor({kTokens, c.output_dim}, 200 * r + mb);
    rank->t[mb].normalizer = kRanks * kTokens * c.output_dim;
  }
  return rank;
}

void RunRanks(std::vector<std::unique_ptr<comm::Communicator>>& comms,
              const std::function<absl::Status(int, comm::Communicator&)>& fn) {
  std::vector<absl::Status> status(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) threads.emplace_back([&, r] { status[r] = fn(r, *comms[r]); });
  for (std::thread& t : threads) t.join();
  for (size_t r = 0; r < comms.size(); ++r) EXPECT_OK(status[r]) << "rank " << r;
}

struct PairResult {
  std::vector<comm::PhaseEvent> events;   // rank 0's F&B pair
  std::vector<double> losses;             // per rank, micro-batch 1
  std::vector<std::vector<float>> grads;  // per rank, every parameter
};

// Forward of micro-batch 0, then the F&B pair (forward 1, backward 0).
PairResult RunPair(bool overlap, bool emulated) {
  comm::NetworkModel net;
  net.other_node = {200, 1};
  auto comms =
      emulated ? comm::EmulatedNetwork(net).Wrap(comm::CreateLocalGroup(kRanks)) : comm::CreateLocalGroup(kRanks);
  PairResult out;
  out.losses.resize(kRanks);
  out.grads.resize(kRanks);
  RunRanks(comms, [&](int r, comm::Communicator& comm) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto rank, MakeRank(r, comm, overlap));
    TANDEM_RETURN_IF_ERROR(rank->stage->Forward(0, rank->x[0], &rank->t[0]).status());
    rank->trace.Clear();
    TANDEM_RETURN_IF_ERROR(
        ForwardBackward(*rank->stage, 1, rank->x[1], &rank->t[1], *rank->stage, 0, Tensor()).status());
    TANDEM_ASSIGN_OR_RETURN(out.losses[r], rank->stage->loss(1));
    for (Parameter* p : rank->model->Parameters()) {
      out.grads[r].insert(out.grads[r].end(), p->grad.span().begin(), p->grad.span().end());
    }
    if (r == 0) out.events = rank->trace.events();
    return absl::OkStatus();
  });
  return out;
}

// Index of the first event of `chain`, `kind` and label ending in `what`
// at or after `from`; -1 if none.
int Find(const std::vector<comm::PhaseEvent>& ev, int chain, Kind kind, const std::string& what, int from = 0) {
  for (int i = from; i < static_cast<int>(ev.size()); ++i) {
    if (ev[i].chain == chain && ev[i].kind == kind && absl::EndsWith(ev[i].what, what)) return i;
  }
  return -1;
}

// True when some operation `op` of chain `a` is posted before a compute
// span `compute` of the other chain begins and waited for after it ends.
bool Encloses(const std::vector<comm::PhaseEvent>& ev, int a, const std::string& op, const std::string& compute) {
  for (int post = Find(ev, a, Kind::kPost, op); post >= 0; post = Find(ev, a, Kind::kPost, op, post + 1)) {
    const int wait = Find(ev, a, Kind::kWaitBegin, ev[post].what.substr(0, 3) + op, post);
    for (int b = Find(ev, 1 - a, Kind::kComputeBegin, compute, post); b >= 0 && (wait < 0 || b < wait);
         b = Find(ev, 1 - a, Kind::kComputeBegin, compute, b + 1)) {
      const int end = Find(ev, 1 - a, Kind::kComputeEnd, compute, b);
      if (end >= 0 && wait > end) return true;
    }
  }
  return false;
}

// In the recorded order of one F&B pair: F's dispatch is posted before B's
// expert compute starts and waited for after it ends; B's combine of dx
// likewise around F's experts; B's dispatch of dy around F's shared expert;
// F's combine around B's expert weight gradients. Without overlap none of it
// holds.
TEST(OverlapTest, ExchangesOfOneMicroBatchTravelWhileTheOtherComputes) {
  const PairResult overlapped = RunPair(/*overlap=*/true, /*emulated=*/false);
  const auto& ev = overlapped.events;
  ASSERT_FALSE(ev.empty());
  EXPECT_TRUE(Encloses(ev, 0, "dispatch", "experts"));
  EXPECT_TRUE(Encloses(ev, 1, "combine dx", "experts"));
  EXPECT_TRUE(Encloses(ev, 1, "dispatch dy", "shared"));
  EXPECT_TRUE(Encloses(ev, 0, "combine", "expert weights"));
  // Inside one micro-batch: the shared expert while its own dispatched rows
  // travel.
  const int post = Find(ev, 0, Kind::kPost, "L0 dispatch");
  const int shared = Find(ev, 0, Kind::kComputeBegin, "L0 shared");
  const int wait = Find(ev, 0, Kind::kWaitBegin, "L0 dispatch");
  EXPECT_TRUE(post >= 0 && post < shared && shared < wait) << post << " " << shared << " " << wait;

  const PairResult serial = RunPair(/*overlap=*/false, /*emulated=*/false);
  EXPECT_FALSE(Encloses(serial.events, 0, "dispatch", "experts"));
  EXPECT_FALSE(Encloses(serial.events, 1, "combine dx", "experts"));
  EXPECT_FALSE(Encloses(serial.events, 1, "dispatch dy", "shared"));
  EXPECT_FALSE(Encloses(serial.events, 0, "combine", "expert weights"));
}

// Overlap changes when things run, not what they compute: losses and
// gradients equal bit for bit, on threads and through the emulated network.
TEST(OverlapTest, SameBitsWithAndWithoutOverlap) {
  const PairResult serial = RunPair(false, false);
  for (bool emulated : {false, true}) {
    const PairResult overlapped = RunPair(true, emulated);
    EXPECT_EQ(overlapped.losses, serial.losses);
    for (int r = 0; r < kRanks; ++r) {
      ASSERT_EQ(overlapped.grads[r].size(), serial.grads[r].size());
      EXPECT_EQ(std::memcmp(overlapped.grads[r].data(), serial.grads[r].data(), 4 * serial.grads[r].size()), 0);
    }
  }
}

// A rank that stalls after posting its first exchange: the other fails
// within the deadline naming the operation it waits for and the rank; a
// rank that never posts, the same.
TEST(OverlapTest, AStalledRankIsNamedNotWaitedForever) {
  for (int steps_before_stall : {1, 0}) {
    SCOPED_TRACE(steps_before_stall);
    comm::NetworkModel net;
    net.other_node = {100, 10};
    auto comms = comm::EmulatedNetwork(net).Wrap(comm::CreateLocalGroup(kRanks));
    absl::Notification done;
    absl::Status rank0;
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
      auto rank = MakeRank(0, *comms[0], true).value();
      rank0 = rank->stage->Forward(0, rank->x[0], &rank->t[0]).status();
      done.Notify();
    });
    threads.emplace_back([&] {
      auto rank = MakeRank(1, *comms[1], true).value();
      Tensor out;
      auto task = rank->stage->ForwardTask(0, rank->x[0], &rank->t[0], &out);
      for (int i = 0; i < steps_before_stall; ++i) EXPECT_OK(task->Step().status());
      done.WaitForNotification();  // stalled; its buffers stay alive
    });
    const absl::Time start = absl::Now();
    for (std::thread& t : threads) t.join();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    EXPECT_THAT(rank0, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("waiting for ranks [1]")));
    EXPECT_THAT(rank0, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                HasSubstr(steps_before_stall == 0 ? "all_to_all i64" : "all_to_all_v bytes")));
  }
}

}  // namespace
}  // namespace tandem::model
