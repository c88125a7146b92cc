// Fuzz-style test of the TCP store server: random and mutated frames, oversize
// lengths, truncated frames and requests before HELLO on raw sockets. The
// server must answer or close each such connection and keep serving others.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <string>

#include "base/testing/status_matchers.h"
#include "comm/store/tcp_store.h"
#include "comm/store/testing/raw_client.h"
#include "comm/store/wire.h"
#include "gtest/gtest.h"

namespace tandem::comm {
namespace {

using ::tandem::comm::testing::RawConnect;

// Sends bytes, then reads until the server closes or 300 ms pass.
void Poke(int port, const std::string& bytes) {
  const int fd = RawConnect(port);
  ASSERT_GE(fd, 0);
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  const absl::Time until = absl::Now() + absl::Milliseconds(300);
  while (absl::Now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    if (::recv(fd, buf, sizeof(buf), 0) <= 0) break;
  }
  ::close(fd);
}

std::string Hello(int rank, int world) {
  wire::Request r;
  r.op = wire::OpCode::kHello;
  r.number = rank;
  r.number2 = world;
  return wire::Frame(wire::EncodeRequest(r));
}

TEST(TcpStoreFuzzTest, MalformedTrafficNeverWedgesTheServer) {
  ASSERT_OK_AND_ASSIGN(auto server, TcpStoreServer::Start("127.0.0.1", 0, 4));
  const int port = server->port();
  wire::Request set;
  set.op = wire::OpCode::kSet;
  set.keys = {"key"};
  set.value = "value";
  const std::string valid = Hello(1, 4) + wire::Frame(wire::EncodeRequest(set));
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string bytes = valid;
    switch (i % 5) {
      case 0:  // random bytes
        bytes.resize(rng() % 64);
        for (char& c : bytes) c = static_cast<char>(rng());
        break;
      case 1:  // flip some bytes of a valid exchange
        for (int k = 0; k < 3; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
        break;
      case 2:  // truncated
        bytes.resize(rng() % bytes.size());
        break;
      case 3:  // oversize length prefix
        bytes = Hello(0, 4) + std::string("\xff\xff\xff\x7f", 4) + "xx";
        break;
      default:  // request before HELLO, or an unknown rank
        bytes = (rng() % 2 ? wire::Frame(wire::EncodeRequest(set)) : Hello(9, 4));
    }
    Poke(port, bytes);
  }
  // A well-behaved client still works.
  ASSERT_OK_AND_ASSIGN(auto client, TcpStore::Connect("127.0.0.1", port, 0, 4, Deadline::In(absl::Seconds(5))));
  ASSERT_OK(client->Set("after", "fuzz"));
  EXPECT_THAT(client->Get("after", Deadline::In(absl::Seconds(5))), tandem::testing::IsOkAndHolds("fuzz"));
}

TEST(WireTest, MutatedRequestsDecodeOrFailCleanly) {
  wire::Request r;
  r.op = wire::OpCode::kWait;
  r.keys = {"a", "bb", "ccc"};
  r.timeout_ms = 1000;
  const std::string valid = wire::EncodeRequest(r);
  ASSERT_OK_AND_ASSIGN(wire::Request back, wire::DecodeRequest(valid));
  EXPECT_EQ(back.keys, r.keys);
  std::mt19937 rng(11);
  int failed = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string m = valid;
    m[rng() % m.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) m.resize(rng() % m.size());
    failed += !wire::DecodeRequest(m).ok();
  }
  EXPECT_GT(failed, 1000);
}

}  // namespace
}  // namespace tandem::comm
