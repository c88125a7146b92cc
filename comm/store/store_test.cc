// The same checks against the in-memory store and the TCP store on loopback.
#include "comm/store/store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/testing/status_matchers.h"
#include "comm/store/rendezvous.h"
#include "comm/store/tcp_store.h"
#include "comm/store/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

using ::tandem::testing::IsOkAndHolds;
using ::tandem::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      auto server = TcpStoreServer::Start("127.0.0.1", 0, 8);
      ASSERT_OK(server);
      server_ = *std::move(server);
      for (int r = 0; r < 8; ++r) {
        auto c = TcpStore::Connect("127.0.0.1", server_->port(), r, 8, Deadline::In(absl::Seconds(10)));
        ASSERT_OK(c);
        clients_.push_back(*std::move(c));
      }
    } else {
      auto mem = std::make_shared<MemoryStore>();
      for (int r = 0; r < 8; ++r) shared_.push_back(mem);
    }
  }
  Store& at(int r) {
    if (GetParam()) return *clients_[r];
    return *shared_[r];
  }

  std::unique_ptr<TcpStoreServer> server_;
  std::vector<std::unique_ptr<TcpStore>> clients_;
  std::vector<std::shared_ptr<MemoryStore>> shared_;
};

TEST_P(StoreTest, SetGetCheckDelete) {
  ASSERT_OK(at(0).Set("a", std::string("x\0y", 3)));
  EXPECT_THAT(at(1).Get("a", Deadline::In(absl::Seconds(5))), IsOkAndHolds(std::string("x\0y", 3)));
  EXPECT_THAT(at(2).Check("a"), IsOkAndHolds(true));
  EXPECT_THAT(at(3).Delete("a"), IsOkAndHolds(true));
  EXPECT_THAT(at(3).Delete("a"), IsOkAndHolds(false));
  EXPECT_THAT(at(2).Check("a"), IsOkAndHolds(false));
}

TEST_P(StoreTest, GetWaitsForTheKeyAndTimesOutNamingIt) {
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_OK(at(1).Set("late", "v"));
  });
  EXPECT_THAT(at(0).Get("late", Deadline::In(absl::Seconds(10))), IsOkAndHolds("v"));
  setter.join();
  EXPECT_THAT(at(0).Get("never", Deadline::In(absl::Milliseconds(100))),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("waiting for key(s) [never]")));
  EXPECT_THAT(at(0).Wait({"late", "nope1", "nope2"}, Deadline::In(absl::Milliseconds(100))),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("[nope1, nope2]")));
}

// Regression: a timed-out wait said the last 200 ms slice of the server's
// wait ("deadline 200ms exceeded"), not the wait, and callers could learn
// the missing keys only by asking the store again (which fails once its
// host is gone). The timeout names the whole wait and carries the keys.
TEST_P(StoreTest, AWaitTimeoutNamesTheWholeWaitAndCarriesTheMissingKeys) {
  ASSERT_OK(at(1).Set("here", "v"));
  const absl::Status s = at(0).Wait({"here", "gone1", "gone2"}, Deadline::In(absl::Milliseconds(700)));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("deadline 700ms exceeded")));
  EXPECT_EQ(MissingKeys(s), (std::vector<std::string>{"gone1", "gone2"}));
  EXPECT_TRUE(MissingKeys(absl::OkStatus()).empty());
  EXPECT_TRUE(MissingKeys(absl::DeadlineExceededError("another timeout")).empty());
  EXPECT_TRUE(IsStoreTimeout(s));
  EXPECT_TRUE(IsStoreTimeout(at(0).Get("gone1", Deadline::In(absl::Milliseconds(10))).status()));
  EXPECT_FALSE(IsStoreTimeout(absl::DeadlineExceededError("another timeout")));
  EXPECT_FALSE(IsStoreTimeout(absl::OkStatus()));
}

TEST_P(StoreTest, AddIsAtomicUnderContention) {
  std::vector<std::thread> threads;
  for (int r = 0; r < 8; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < 50; ++i) ASSERT_OK(at(r).Add("counter", 1));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_THAT(at(0).Add("counter", 0), IsOkAndHolds(400));
  ASSERT_OK(at(0).Set("text", "abc"));
  EXPECT_THAT(at(0).Add("text", 1), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not an integer")));
}

// Regression: INT64_MAX + INT64_MAX returned -2. An add that would overflow
// is refused and leaves the value as it was.
TEST_P(StoreTest, AddRefusesOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  ASSERT_THAT(at(0).Add("big", kMax), IsOkAndHolds(kMax));
  EXPECT_THAT(at(1).Add("big", kMax), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("overflow")));
  EXPECT_THAT(at(2).Add("big", 0), IsOkAndHolds(kMax));
  ASSERT_THAT(at(0).Add("small", std::numeric_limits<int64_t>::min()),
              IsOkAndHolds(std::numeric_limits<int64_t>::min()));
  EXPECT_THAT(at(1).Add("small", -1), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("overflow")));
}

TEST_P(StoreTest, LimitsAreEnforced) {
  EXPECT_THAT(at(0).Set("", "v"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("store key")));
  EXPECT_THAT(at(0).Set(std::string(kMaxStoreKeyBytes + 1, 'k'), "v"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 1..4096 bytes")));
}

INSTANTIATE_TEST_SUITE_P(MemoryAndTcp, StoreTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Tcp" : "Memory"; });

TEST(TcpStoreTest, UnknownRankIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto server, TcpStoreServer::Start("127.0.0.1", 0, 2));
  EXPECT_THAT(TcpStore::Connect("127.0.0.1", server->port(), 2, 2, Deadline::In(absl::Seconds(5))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown rank 2 of world size 2")));
  EXPECT_THAT(TcpStore::Connect("127.0.0.1", server->port(), 0, 3, Deadline::In(absl::Seconds(5))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown rank 0 of world size 3")));
  EXPECT_OK(TcpStore::Connect("127.0.0.1", server->port(), 1, 2, Deadline::In(absl::Seconds(5))));
}

TEST(TcpStoreTest, ConnectTimesOutWithoutServer) {
  ASSERT_OK_AND_ASSIGN(auto server, TcpStoreServer::Start("127.0.0.1", 0, 1));
  const int port = server->port();
  server.reset();
  EXPECT_THAT(TcpStore::Connect("127.0.0.1", port, 0, 1, Deadline::In(absl::Milliseconds(200))),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("rank 0 could not connect")));
}

TEST(RendezvousTest, ReadsTorchrunAndOpenMpiVariables) {
  auto env = [](std::vector<std::pair<const char*, const char*>> vars) -> GetEnv {
    return [vars](const char* n) -> const char* {
      for (const auto& [k, v] : vars) {
        if (std::string(k) == n) return v;
      }
      return nullptr;
    };
  };
  ASSERT_OK_AND_ASSIGN(RendezvousInfo a, ReadRendezvousEnv(env({{"RANK", "3"},
                                                                {"WORLD_SIZE", "4"},
                                                                {"LOCAL_RANK", "1"},
                                                                {"MASTER_ADDR", "10.1.2.3"},
                                                                {"MASTER_PORT", "1234"}})));
  EXPECT_EQ(a.rank, 3);
  EXPECT_EQ(a.world_size, 4);
  EXPECT_EQ(a.local_rank, 1);
  EXPECT_EQ(a.master_addr, "10.1.2.3");
  EXPECT_EQ(a.master_port, 1234);
  ASSERT_OK_AND_ASSIGN(
      RendezvousInfo b,
      ReadRendezvousEnv(
          env({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}})));
  EXPECT_EQ(b.rank, 2);
  EXPECT_EQ(b.world_size, 8);
  EXPECT_EQ(b.master_port, 29500);
  EXPECT_THAT(ReadRendezvousEnv(env({{"RANK", "7"}, {"WORLD_SIZE", "4"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "RANK: expected an integer in [0, WORLD_SIZE=4), got '7'"));
  EXPECT_THAT(ReadRendezvousEnv(env({{"RANK", "0"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("WORLD_SIZE: not set")));
  EXPECT_THAT(ReadRendezvousEnv(env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "http"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MASTER_PORT: expected an integer")));
  // The job token and the store timeout.
  ASSERT_OK_AND_ASSIGN(
      RendezvousInfo c,
      ReadRendezvousEnv(
          env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TANDEM_JOB_TOKEN", "abc"}, {"TANDEM_STORE_TIMEOUT", "2.5"}})));
  EXPECT_EQ(c.job_token, "abc");
  EXPECT_EQ(c.store_timeout, absl::Milliseconds(2500));
  EXPECT_EQ(b.store_timeout, absl::Seconds(30));
  EXPECT_THAT(ReadRendezvousEnv(env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"TANDEM_STORE_TIMEOUT", "-1"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TANDEM_STORE_TIMEOUT: expected seconds")));
}

// False once the peer has gone.
bool SendReply(int fd, wire::Reply r) {
  const std::string frame = wire::Frame(std::string(1, static_cast<char>(r)));
  return ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) > 0;
}

// A fake store host on 127.0.0.1. Serve() runs `fn` on a thread for the next
// connection once it has taken the HELLO and answered ok. The destructor
// shuts the listener (an accept still waiting returns) and joins.
class FakeHost {
 public:
  FakeHost() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    socklen_t len = sizeof(addr);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && ::listen(listener_, 4) == 0 &&
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~FakeHost() {
    ::shutdown(listener_, SHUT_RDWR);
    for (std::thread& t : threads_) t.join();
    ::close(listener_);
  }
  int port() const { return port_; }  // 0 when it could not listen

  // A client as rank 1 of 2 that reports a silent host after 500 ms.
  absl::StatusOr<std::unique_ptr<TcpStore>> Connect() const {
    TcpStoreOptions o;
    o.answer_timeout = absl::Milliseconds(500);
    return TcpStore::Connect("127.0.0.1", port_, 1, 2, Deadline::In(absl::Seconds(5)), o);
  }

  void Serve(std::function<void(int fd)> fn) {
    threads_.emplace_back([this, fn] {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      char hello[64];
      ::recv(fd, hello, sizeof(hello), 0);
      SendReply(fd, wire::Reply::kOk);
      fn(fd);
      ::close(fd);
    });
  }

 private:
  int listener_ = -1;
  int port_ = 0;
  std::vector<std::thread> threads_;
};

// Regression: with the store's host stopped (SIGSTOP), ranks waited 71 s
// and 131 s, past every deadline, and their messages said neither that the
// store host had stopped answering nor how long they had waited. Here the
// "host" accepts and answers HELLO, then goes silent: a wait with a long
// deadline ends within the answer timeout, naming the host, the request and
// the time.
TEST(TcpStoreTest, AFrozenStoreHostIsReportedWithinTheAnswerTimeout) {
  FakeHost host;
  ASSERT_NE(host.port(), 0);
  host.Serve([](int) { absl::SleepFor(absl::Seconds(3)); });  // stopped
  ASSERT_OK_AND_ASSIGN(auto store, host.Connect());
  const absl::Time start = absl::Now();
  const absl::Status s = store->Wait({"never"}, Deadline::In(absl::Seconds(60)));
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr(absl::StrCat("store 127.0.0.1:", host.port())),
                                HasSubstr("stopped answering: nothing for 5"), HasSubstr("reply to wait"))));
  EXPECT_LT(took, absl::Seconds(2));
}

// The other case: the host keeps answering (heartbeats) but never replies
// to the request, as when this process was stopped past the request's
// deadline. The request ends at its deadline plus the 5 s grace with
// kDeadlineExceeded, not as a dead or stopped host (the test above is its
// twin: there the host goes silent). The next request goes on a new
// connection, not behind the heartbeats still arriving on this one.
TEST(TcpStoreTest, ALiveHostThatNeverRepliesEndsAtTheDeadline) {
  std::atomic<bool> done{false};  // outlives the host's threads
  FakeHost host;
  ASSERT_NE(host.port(), 0);
  host.Serve([&](int fd) {
    char request[256];
    ::recv(fd, request, sizeof(request), 0);  // the wait; heartbeats answer a pending request
    // Until the test ends or the client leaves.
    while (!done && SendReply(fd, wire::Reply::kWorking)) absl::SleepFor(absl::Milliseconds(100));
  });
  ASSERT_OK_AND_ASSIGN(auto store, host.Connect());
  const absl::Time start = absl::Now();
  const absl::Status s = store->Wait({"never"}, Deadline::In(absl::Milliseconds(200)));
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded,
                          AllOf(HasSubstr(absl::StrCat("store 127.0.0.1:", host.port(), " (rank 1)")),
                                HasSubstr("no reply to wait by its deadline"))));
  EXPECT_FALSE(IsStoreTimeout(s));  // callers must not read it as missing keys
  EXPECT_GE(took, absl::Seconds(5));
  EXPECT_LT(took, absl::Seconds(30));

  host.Serve([](int fd) {
    char request[256];
    if (::recv(fd, request, sizeof(request), 0) > 0) SendReply(fd, wire::Reply::kOk);
  });
  EXPECT_OK(store->Set("after", "v"));
  done = true;
}

}  // namespace
}  // namespace tandem::comm
