// A peer that speaks the TCP store's protocol but not the backend's: it
// writes contributions and messages by hand, short, oversized, truncated or
// with counts that do not add up. The real rank refuses each with an error
// that names the peer and what was wrong, within its deadline, and never
// reads past what the peer sent (the status is asserted, so an over-read
// into a string's spare capacity fails here even where a sanitizer is
// silent). A well-formed hand-written contribution is accepted: the
// encoding below is the backend's, so each refusal is the malformation's.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/testing/status_matchers.h"
#include "comm/store/tcp_store.h"
#include "comm/store/wire.h"
#include "comm/store_backend/store_communicator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Rank 0 is a real communicator; rank 1 is a bare store client.
struct World {
  std::unique_ptr<TcpStoreServer> server;
  std::unique_ptr<TcpStore> real_client, hostile;
  std::unique_ptr<Communicator> comm;
};

World Connect() {
  World w;
  w.server = *TcpStoreServer::Start("127.0.0.1", 0, 2);
  w.real_client = *TcpStore::Connect("127.0.0.1", w.server->port(), 0, 2, Deadline::In(absl::Seconds(10)));
  w.hostile = *TcpStore::Connect("127.0.0.1", w.server->port(), 1, 2, Deadline::In(absl::Seconds(10)));
  w.comm = MakeStoreCommunicator(w.real_client.get(), 0, 2, "t/");
  return w;
}

// A collective contribution as the backend writes it: op, dtype, count and
// extra as i64, then the payload.
std::string Contribution(int64_t op, DataType t, int64_t count, int64_t extra, const std::string& payload) {
  std::string v;
  for (int64_t x : {op, static_cast<int64_t>(t), count, extra}) wire::PutInt(x, &v);
  return v + payload;
}

std::string Ints(const std::vector<int32_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

constexpr int64_t kAllReduce = 1, kAllToAllV = 6;

// rank 0's all-reduce of 1000 i32 against rank 1's contribution `value`.
absl::Status AllReduceAgainst(const std::string& value, std::vector<int32_t>* out) {
  World w = Connect();
  if (absl::Status s = w.hostile->Set("t/c/0/1", value); !s.ok()) return s;
  std::vector<int32_t> mine(1000, 1);
  out->assign(1000, 0);
  absl::StatusOr<std::unique_ptr<Work>> work =
      w.comm->AllReduce(mine.data(), out->data(), 1000, DataType::kI32, ReduceOp::kSum);
  if (!work.ok()) return work.status();
  return (*work)->Wait(Deadline::In(absl::Seconds(5)));
}

TEST(HostilePeerTest, AWellFormedHandWrittenContributionIsAccepted) {
  std::vector<int32_t> out;
  ASSERT_OK(AllReduceAgainst(
      Contribution(kAllReduce, DataType::kI32, 1000, static_cast<int64_t>(ReduceOp::kSum), Ints(std::vector(1000, 2))),
      &out));
  EXPECT_EQ(out, std::vector<int32_t>(1000, 3));
}

// Regression: a header declaring 1000 i32 with 8 bytes of data made rank 0
// reduce past the end of the value (heap-buffer-overflow under ASan).
TEST(HostilePeerTest, AShortContributionIsRefusedNotOverRead) {
  std::vector<int32_t> out;
  EXPECT_THAT(AllReduceAgainst(Contribution(kAllReduce, DataType::kI32, 1000, 0, Ints({7, 7})), &out),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("rank 1"), HasSubstr("expected 4000 bytes"), HasSubstr("got 8"))));
}

TEST(HostilePeerTest, AnOversizedContributionIsRefused) {
  std::vector<int32_t> out;
  EXPECT_THAT(AllReduceAgainst(Contribution(kAllReduce, DataType::kI32, 1000, 0, Ints(std::vector(1001, 2))), &out),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("rank 1"), HasSubstr("got 4004"))));
}

TEST(HostilePeerTest, ATruncatedHeaderIsRefused) {
  std::vector<int32_t> out;
  EXPECT_THAT(AllReduceAgainst("short", &out),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("rank 1"), HasSubstr("header"))));
}

// An all_to_all_v whose per-rank counts claim more data than was sent, or a
// negative count.
TEST(HostilePeerTest, AllToAllVCountsThatDoNotAddUpAreRefused) {
  for (const std::vector<int64_t>& counts : {std::vector<int64_t>{2, 1000000}, std::vector<int64_t>{2, -1}}) {
    World w = Connect();
    std::string value = Contribution(kAllToAllV, DataType::kI32, 0, 0, "");
    for (int64_t c : counts) wire::PutInt(c, &value);
    value += Ints({5, 6});
    ASSERT_OK(w.hostile->Set("t/c/0/1", value));
    std::vector<int32_t> send = {1, 2}, recv(3);
    const std::vector<int64_t> send_counts = {1, 1}, recv_counts = {1, 2};
    ASSERT_OK_AND_ASSIGN(auto work,
                         w.comm->AllToAllV(send.data(), send_counts, recv.data(), recv_counts, DataType::kI32));
    EXPECT_THAT(work->Wait(Deadline::In(absl::Seconds(5))),
                StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("rank 1"), HasSubstr("all_to_all_v"))))
        << counts[1];
  }
}

// A message whose header announces 100 f32 but carries 4 bytes.
TEST(HostilePeerTest, AShortMessageIsRefused) {
  World w = Connect();
  std::string value;
  wire::PutInt(100, &value);
  wire::PutInt(static_cast<int64_t>(DataType::kF32), &value);
  value += "abcd";
  ASSERT_OK(w.hostile->Set("t/p/1/0/0", value));
  std::vector<float> recv(100);
  const P2POp op = P2POp::Recv(1, recv.data(), 100, DataType::kF32);
  ASSERT_OK_AND_ASSIGN(auto work, w.comm->SendRecv({op}));
  EXPECT_THAT(work->Wait(Deadline::In(absl::Seconds(5))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("rank 1"), HasSubstr("expected 400 bytes"), HasSubstr("got 4"))));
}

// Out of order: the peer posts collective #1 but never #0; rank 0 names it
// within the deadline.
TEST(HostilePeerTest, AContributionOutOfOrderIsWaitedForWithADeadline) {
  World w = Connect();
  ASSERT_OK(w.hostile->Set("t/c/1/1", Contribution(kAllReduce, DataType::kI32, 1, 0, Ints({1}))));
  int32_t x = 1, y = 0;
  ASSERT_OK_AND_ASSIGN(auto work, w.comm->AllReduce(&x, &y, 1, DataType::kI32, ReduceOp::kSum));
  EXPECT_THAT(work->Wait(Deadline::In(absl::Milliseconds(300))),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("waiting for ranks [1]")));
}

}  // namespace
}  // namespace tandem::comm
