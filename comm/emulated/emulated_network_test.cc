#include "comm/emulated/emulated_network.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "comm/testing/conformance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The conformance suite through the model (a fast link, so it stays quick):
// the bytes still move through the local backend.
testing::Backend EmulatedLocal() {
  testing::Backend b = testing::LocalBackend();
  b.name = "emulated";
  b.make_group = [](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
    NetworkModel m;
    m.other_node = {5, 100};
    return EmulatedNetwork(m).Wrap(CreateLocalGroup(n));
  };
  return b;
}

using testing::ConformanceTest;
INSTANTIATE_TEST_SUITE_P(Emulated, ConformanceTest,
                         ::testing::Combine(::testing::Values(EmulatedLocal()), ::testing::Values(1, 2, 3, 4, 8)),
                         [](const ::testing::TestParamInfo<ConformanceTest::ParamType>& info) {
                           return absl::StrCat(std::get<0>(info.param).name, std::get<1>(info.param));
                         });

// Rank r posts after sleeping delay[r] ms, then waits; returns each rank's
// wait completion.
std::vector<Clock::time_point> AllToAll(std::vector<std::unique_ptr<Communicator>>& comms, int64_t bytes,
                                        std::vector<int> delay_ms = {}) {
  std::vector<Clock::time_point> done(comms.size());
  std::vector<absl::Status> status = testing::RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    if (r < static_cast<int>(delay_ms.size())) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms[r]));
    std::vector<char> send(bytes * c.size(), 1), recv(bytes * c.size());
    absl::Status s =
        PostAndWait(c.AllToAll(send.data(), recv.data(), bytes, DataType::kBytes), Deadline::In(absl::Seconds(20)));
    done[r] = Clock::now();
    return s;
  });
  for (const absl::Status& s : status) EXPECT_OK(s);
  return done;
}

// latency + bytes / bandwidth per transfer, from the last post: 2 ranks,
// 1 MB each way over 1000 us and 1 GB/s = 2000 us.
TEST(EmulatedNetworkTest, AnOperationTakesLatencyPlusSerialization) {
  NetworkModel m;
  m.other_node = {1000, 1};
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  const std::vector<Clock::time_point> done = AllToAll(comms, 1000000);
  for (int r = 0; r < 2; ++r) {
    const std::vector<ModeledOp> log = net.Log(r);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].name, "all_to_all 1000000 B");
    EXPECT_NEAR(log[0].modeled_us(), 2000, 1e-3);
    EXPECT_NEAR(log[0].alone_us, 2000, 1e-3);     // nothing queued before it
    EXPECT_GE(Us(done[r] - log[0].ready), 2000);  // never earlier than modeled
  }
}

// Must-fail twin: the modeled time follows the link (half the bandwidth,
// twice the serialization), so the check above sees the model, not a
// constant.
TEST(EmulatedNetworkTest, TheModeledTimeFollowsTheLink) {
  NetworkModel m;
  m.other_node = {1000, 0.5};
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  AllToAll(comms, 1000000);
  EXPECT_NEAR(net.Log(0)[0].modeled_us(), 3000, 1e-3);
}

// The transfer starts when the last participant posts.
TEST(EmulatedNetworkTest, ReadyIsTheLastPost) {
  NetworkModel m;
  m.other_node = {100, 10};
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  AllToAll(comms, 1000, {0, 30});
  const ModeledOp a = net.Log(0)[0], b = net.Log(1)[0];
  EXPECT_EQ(a.ready, b.ready);
  EXPECT_EQ(a.ready, b.posted);  // rank 1 posted last
  EXPECT_GE(Us(b.posted - a.posted), 25000);
  EXPECT_NEAR(a.modeled_us(), 100.1, 1e-3);  // 100 us + 1000 B at 10 GB/s
}

// One egress per rank, first come first served: a second exchange posted
// while the first one's bytes are still leaving waits for them.
TEST(EmulatedNetworkTest, EgressIsServedInOrder) {
  NetworkModel m;
  m.other_node = {0, 0.1};  // 10 ms per MB
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  std::vector<absl::Status> status = testing::RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    std::vector<char> send(2000000, 1), recv(2000000);
    std::unique_ptr<Work> first, second;
    TANDEM_ASSIGN_OR_RETURN(first, c.AllToAll(send.data(), recv.data(), 1000000 / 2, DataType::kBytes));
    TANDEM_ASSIGN_OR_RETURN(second,
                            c.AllToAll(send.data() + 1000000, recv.data() + 1000000, 1000000 / 2, DataType::kBytes));
    TANDEM_RETURN_IF_ERROR(first->Wait(Deadline::In(absl::Seconds(20))));
    return second->Wait(Deadline::In(absl::Seconds(20)));
  });
  for (const absl::Status& s : status) ASSERT_OK(s);
  const std::vector<ModeledOp> log = net.Log(0);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NEAR(log[0].modeled_us(), 5000, 1e-3);
  // The second starts when the first's bytes have left: its end is one
  // serialization after the first's. Alone it would have taken one.
  EXPECT_NEAR(Us(log[1].end - log[0].end), 5000, 1e-3);
  EXPECT_NEAR(log[1].modeled_us(), 10000 - Us(log[1].ready - log[0].ready), 1e-3);
  EXPECT_NEAR(log[1].alone_us, 5000, 1e-3);
}

// Link classes: ranks of one node talk over same_node (free here), others
// over other_node.
TEST(EmulatedNetworkTest, LinksFollowTheNodes) {
  NetworkModel m;
  m.ranks_per_node = 2;
  m.other_node = {700, 1};
  EmulatedNetwork net(m);
  EXPECT_EQ(net.LinkBetween(0, 1).latency_us, 0);
  EXPECT_EQ(net.LinkBetween(1, 2).latency_us, 700);
  m.between_nodes = [](int src, int dst) { return Link{double(10 * src + dst), 1}; };
  EmulatedNetwork by_pair(m);
  EXPECT_EQ(by_pair.LinkBetween(3, 0).latency_us, 30);
  EXPECT_EQ(by_pair.LinkBetween(2, 3).latency_us, 0);  // same node
  // A split group keeps the world's ranks: ranks 1 and 2 of the world are
  // ranks 0 and 1 of the group and cross a node.
  auto comms = net.Wrap(CreateLocalGroup(4));
  std::vector<absl::Status> status = testing::RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto group,
                            c.Split(r == 1 || r == 2 ? 0 : Communicator::kNoColor, r, Deadline::In(absl::Seconds(20))));
    if (group == nullptr) return absl::OkStatus();
    int32_t x = r, y = 0;
    return PostAndWait(group->AllReduce(&x, &y, 1, DataType::kI32, ReduceOp::kSum), Deadline::In(absl::Seconds(20)));
  });
  for (const absl::Status& s : status) ASSERT_OK(s);
  const std::vector<ModeledOp> log = net.Log(1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].group, "world/s0c0");
  EXPECT_GE(log[0].modeled_us(), 700);
}

// Point-to-point: a message is ready when both its send and its receive are
// posted.
TEST(EmulatedNetworkTest, MessagesStartWhenBothSidesPosted) {
  NetworkModel m;
  m.other_node = {300, 1};
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  std::vector<absl::Status> status = testing::RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    std::vector<float> buf(1000);
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const P2POp op =
        r == 0 ? P2POp::Send(1, buf.data(), 1000, DataType::kF32) : P2POp::Recv(0, buf.data(), 1000, DataType::kF32);
    return PostAndWait(c.SendRecv({op}), Deadline::In(absl::Seconds(20)));
  });
  for (const absl::Status& s : status) ASSERT_OK(s);
  const ModeledOp send = net.Log(0)[0], recv = net.Log(1)[0];
  EXPECT_EQ(send.ready, recv.posted);
  EXPECT_NEAR(send.modeled_us(), 300 + 4000 / 1e3, 1e-3);
  EXPECT_EQ(send.end, recv.end);
}

// A rank that never posts: the others fail with the backend's deadline
// error, naming the operation and the rank; a modeled completion beyond the
// deadline is an error naming the operation too.
TEST(EmulatedNetworkTest, DeadlinesNameTheOperation) {
  NetworkModel m;
  m.other_node = {0, 1};
  EmulatedNetwork net(m);
  auto comms = net.Wrap(CreateLocalGroup(2));
  std::vector<char> send(2), recv(2);
  EXPECT_THAT(PostAndWait(comms[0]->AllToAll(send.data(), recv.data(), 1, DataType::kBytes),
                          Deadline::In(absl::Milliseconds(100))),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("waiting for ranks [1]")));
  // A 1 s latency cannot finish within a 300 ms deadline.
  NetworkModel far;
  far.other_node = {1e6, 1};
  auto slow = EmulatedNetwork(far).Wrap(CreateLocalGroup(2));
  std::vector<absl::Status> status = testing::RunRanks(slow, [&](int r, Communicator& c) -> absl::Status {
    std::vector<char> s(2000), d(2000);
    return PostAndWait(c.AllToAll(s.data(), d.data(), 1000, DataType::kBytes), Deadline::In(absl::Milliseconds(300)));
  });
  for (const absl::Status& s : status) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("all_to_all 1000 B: the modeled")));
  }
}

TEST(EmulatedNetworkTest, ParseLinkNamesTheFlag) {
  ASSERT_OK_AND_ASSIGN(Link l, ParseLink("--ep_link", "20:25"));
  EXPECT_EQ(l.latency_us, 20);
  EXPECT_EQ(l.gbps, 25);
  for (const char* bad : {"20", "20:0", "-1:5", "a:b", "1:2:3", "nan:4"}) {
    EXPECT_THAT(ParseLink("--ep_link", bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--ep_link")))
        << bad;
  }
}

}  // namespace
}  // namespace tandem::comm
