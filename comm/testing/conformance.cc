#include "comm/testing/conformance.h"

#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "gmock/gmock.h"

namespace tandem::comm::testing {

Backend LocalBackend() {
  Backend b;
  b.name = "local";
  b.make_group = [](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
    return CreateLocalGroup(n);
  };
  b.alloc = [](int, int64_t bytes) -> void* { return ::operator new(std::max<int64_t>(bytes, 1)); };
  b.free = [](int, void* p) { ::operator delete(p); };
  b.upload = [](int, void* dst, const void* host, int64_t bytes) {
    if (bytes > 0) std::memcpy(dst, host, bytes);
  };
  b.download = [](int, void* host, const void* src, int64_t bytes) {
    if (bytes > 0) std::memcpy(host, src, bytes);
  };
  b.unavailable = [] { return std::string(); };
  return b;
}

std::vector<absl::Status> RunRanks(std::vector<std::unique_ptr<Communicator>>& comms,
                                   const std::function<absl::Status(int, Communicator&)>& fn) {
  std::vector<absl::Status> out(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] { out[r] = fn(static_cast<int>(r), *comms[r]); });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// Host bytes of `values` (small integers, exact in every dtype) as dtype t.
std::vector<char> Encode(DataType t, const std::vector<double>& values) {
  std::vector<char> out(values.size() * SizeOf(t));
  for (size_t i = 0; i < values.size(); ++i) {
    char* p = out.data() + i * SizeOf(t);
    const double v = values[i];
    switch (t) {
      case DataType::kF32: {
        const float f = static_cast<float>(v);
        std::memcpy(p, &f, 4);
        break;
      }
      case DataType::kI32: {
        const int32_t x = static_cast<int32_t>(v);
        std::memcpy(p, &x, 4);
        break;
      }
      case DataType::kI64: {
        const int64_t x = static_cast<int64_t>(v);
        std::memcpy(p, &x, 8);
        break;
      }
      case DataType::kBF16: {
        const uint16_t h = FloatToBf16(static_cast<float>(v));
        std::memcpy(p, &h, 2);
        break;
      }
      case DataType::kF16: {
        const uint16_t h = FloatToF16(static_cast<float>(v));
        std::memcpy(p, &h, 2);
        break;
      }
      case DataType::kBytes: {
        p[0] = static_cast<char>(static_cast<int>(v));
        break;
      }
    }
  }
  return out;
}

// Index of the first differing element, or -1: bitwise comparison.
int64_t FirstMismatch(DataType t, const std::vector<char>& got, const std::vector<char>& want) {
  if (got.size() != want.size()) return 0;
  const int64_t es = SizeOf(t);
  for (size_t i = 0; i < got.size(); i += es) {
    if (std::memcmp(got.data() + i, want.data() + i, es) != 0) return static_cast<int64_t>(i / es);
  }
  return -1;
}

// Per-rank device buffers with host staging.
class Buffers {
 public:
  Buffers(const Backend& b, int ranks, int64_t bytes) : b_(b), bytes_(bytes) {
    for (int r = 0; r < ranks; ++r) ptr_.push_back(b.alloc(r, bytes));
  }
  ~Buffers() {
    for (int r = 0; r < static_cast<int>(ptr_.size()); ++r) b_.free(r, ptr_[r]);
  }
  void* at(int r) { return ptr_[r]; }
  void Upload(int r, const std::vector<char>& host) { b_.upload(r, ptr_[r], host.data(), host.size()); }
  std::vector<char> Download(int r) {
    std::vector<char> host(bytes_);
    b_.download(r, host.data(), ptr_[r], bytes_);
    return host;
  }

 private:
  const Backend& b_;
  const int64_t bytes_;
  std::vector<void*> ptr_;
};

const DataType kTypes[] = {DataType::kF32, DataType::kBF16, DataType::kF16, DataType::kI32, DataType::kI64};

#define TANDEM_SETUP_OR_SKIP()                                       \
  const Backend& backend = std::get<0>(GetParam());                  \
  const int n = std::get<1>(GetParam());                             \
  if (const std::string why = backend.unavailable(); !why.empty()) { \
    GTEST_SKIP() << backend.name << ": " << why;                     \
  }                                                                  \
  auto group = backend.make_group(n);                                \
  ASSERT_OK(group);                                                  \
  std::vector<std::unique_ptr<Communicator>>& comms = *group

void ExpectAllOk(const std::vector<absl::Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) EXPECT_OK(statuses[r]) << "rank " << r;
}

// Must-fail twin of the bitwise comparison every test relies on.
TEST(ComparisonTest, OneChangedElementIsFound) {
  std::vector<double> v = {1, 2, 3, 4};
  for (DataType t : kTypes) {
    std::vector<char> a = Encode(t, v);
    EXPECT_EQ(FirstMismatch(t, a, Encode(t, v)), -1);
    v[2] = 5;
    EXPECT_EQ(FirstMismatch(t, a, Encode(t, v)), 2);
    v[2] = 3;
  }
}

// value(r, i) = b(i) + 2r with b(i) in [0, 16): sum, max, min and avg are
// small integers, exact in every dtype whatever the order.
double Base(int64_t i) { return static_cast<double>((i * 7 + 3) % 16); }

TEST_P(ConformanceTest, AllReduceMatchesClosedFormsBitwise) {
  TANDEM_SETUP_OR_SKIP();
  for (DataType t : kTypes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
      for (int64_t count : {0, 1, 7, 4099}) {
        for (bool in_place : {false, true}) {
          SCOPED_TRACE(
              absl::StrFormat("%s %s count=%d in_place=%d", DataTypeName(t), ReduceOpName(op), count, in_place));
          const int64_t bytes = count * SizeOf(t);
          Buffers send(backend, n, bytes), recv(backend, n, bytes);
          std::vector<double> want(count);
          for (int64_t i = 0; i < count; ++i) {
            const double b = Base(i);
            want[i] = op == ReduceOp::kSum   ? n * b + n * (n - 1.0)
                      : op == ReduceOp::kMax ? b + 2 * (n - 1)
                      : op == ReduceOp::kMin ? b
                                             : b + (n - 1);
          }
          for (int r = 0; r < n; ++r) {
            std::vector<double> in(count);
            for (int64_t i = 0; i < count; ++i) in[i] = Base(i) + 2 * r;
            send.Upload(r, Encode(t, in));
          }
          ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
            void* out = in_place ? send.at(r) : recv.at(r);
            return PostAndWait(c.AllReduce(send.at(r), out, count, t, op), Deadline::In(kTimeout));
          }));
          for (int r = 0; r < n; ++r) {
            EXPECT_EQ(FirstMismatch(t, (in_place ? send : recv).Download(r), Encode(t, want)), -1) << "rank " << r;
          }
        }
      }
    }
  }
}

// Tag of element i of the block rank `from` addresses to rank `to`.
double Tag(int from, int to, int64_t i) { return from * 100 + to * 10 + i % 10; }

TEST_P(ConformanceTest, AllGatherReduceScatterBroadcastAllToAll) {
  TANDEM_SETUP_OR_SKIP();
  const DataType t = DataType::kI32;
  const int64_t count = 33, es = SizeOf(t);
  Buffers small(backend, n, count * es), big(backend, n, n * count * es), big2(backend, n, n * count * es);
  // AllGather: block q of every rank is rank q's tagged input.
  for (int r = 0; r < n; ++r) {
    std::vector<double> in(count);
    for (int64_t i = 0; i < count; ++i) in[i] = Tag(r, 0, i);
    small.Upload(r, Encode(t, in));
  }
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    return PostAndWait(c.AllGather(small.at(r), big.at(r), count, t), Deadline::In(kTimeout));
  }));
  std::vector<double> gathered(n * count);
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < count; ++i) gathered[q * count + i] = Tag(q, 0, i);
  }
  for (int r = 0; r < n; ++r) EXPECT_EQ(FirstMismatch(t, big.Download(r), Encode(t, gathered)), -1);
  // ReduceScatter: rank r gets sum over q of q's block r.
  for (int r = 0; r < n; ++r) {
    std::vector<double> in(n * count);
    for (int p = 0; p < n; ++p) {
      for (int64_t i = 0; i < count; ++i) in[p * count + i] = Tag(r, p, i);
    }
    big.Upload(r, Encode(t, in));
  }
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    return PostAndWait(c.ReduceScatter(big.at(r), small.at(r), count, t, ReduceOp::kSum), Deadline::In(kTimeout));
  }));
  for (int r = 0; r < n; ++r) {
    std::vector<double> want(count, 0.0);
    for (int q = 0; q < n; ++q) {
      for (int64_t i = 0; i < count; ++i) want[i] += Tag(q, r, i);
    }
    EXPECT_EQ(FirstMismatch(t, small.Download(r), Encode(t, want)), -1) << "rank " << r;
  }
  // AllToAll: block q received by r is q's block r (big still holds tags).
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    return PostAndWait(c.AllToAll(big.at(r), big2.at(r), count, t), Deadline::In(kTimeout));
  }));
  for (int r = 0; r < n; ++r) {
    std::vector<double> want(n * count);
    for (int q = 0; q < n; ++q) {
      for (int64_t i = 0; i < count; ++i) want[q * count + i] = Tag(q, r, i);
    }
    EXPECT_EQ(FirstMismatch(t, big2.Download(r), Encode(t, want)), -1) << "rank " << r;
  }
  // Broadcast from every root.
  for (int root = 0; root < n; ++root) {
    for (int r = 0; r < n; ++r) {
      std::vector<double> in(count);
      for (int64_t i = 0; i < count; ++i) in[i] = Tag(r, root, i);
      small.Upload(r, Encode(t, in));
    }
    ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
      return PostAndWait(c.Broadcast(small.at(r), count, t, root), Deadline::In(kTimeout));
    }));
    std::vector<double> want(count);
    for (int64_t i = 0; i < count; ++i) want[i] = Tag(root, root, i);
    for (int r = 0; r < n; ++r) EXPECT_EQ(FirstMismatch(t, small.Download(r), Encode(t, want)), -1);
  }
}

TEST_P(ConformanceTest, AllToAllVWithZerosAndOneLargeCell) {
  TANDEM_SETUP_OR_SKIP();
  const DataType t = DataType::kI32;
  auto cell = [&](int p, int q) -> int64_t {
    if (p == 0 && q == n - 1) return 5000;  // one very large cell
    return (p * 3 + q * 5) % 4 == 0 ? 0 : (p * 3 + q * 5) % 7;
  };
  int64_t max_bytes = 4;
  for (int p = 0; p < n; ++p) {
    int64_t s = 0, v = 0;
    for (int q = 0; q < n; ++q) s += cell(p, q), v += cell(q, p);
    max_bytes = std::max({max_bytes, s * 4, v * 4});
  }
  Buffers send(backend, n, max_bytes), recv(backend, n, max_bytes);
  for (int r = 0; r < n; ++r) {
    std::vector<double> in;
    for (int q = 0; q < n; ++q) {
      for (int64_t i = 0; i < cell(r, q); ++i) in.push_back(Tag(r, q, i));
    }
    in.resize(max_bytes / 4, 0);
    send.Upload(r, Encode(t, in));
  }
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    std::vector<int64_t> sc(n), rc(n);
    for (int q = 0; q < n; ++q) sc[q] = cell(r, q), rc[q] = cell(q, r);
    return PostAndWait(c.AllToAllV(send.at(r), sc, recv.at(r), rc, t), Deadline::In(kTimeout));
  }));
  for (int r = 0; r < n; ++r) {
    std::vector<double> want;
    for (int q = 0; q < n; ++q) {
      for (int64_t i = 0; i < cell(q, r); ++i) want.push_back(Tag(q, r, i));
    }
    std::vector<char> got = recv.Download(r);
    got.resize(want.size() * 4);
    EXPECT_EQ(FirstMismatch(t, got, Encode(t, want)), -1) << "rank " << r;
  }
}

TEST_P(ConformanceTest, PointToPointRingAndOrderPerPair) {
  TANDEM_SETUP_OR_SKIP();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const DataType t = DataType::kF32;
  constexpr int kMessages = 3;
  const int64_t count = 257;
  Buffers send(backend, n, kMessages * count * 4), recv(backend, n, kMessages * count * 4);
  for (int r = 0; r < n; ++r) {
    std::vector<double> in(kMessages * count);
    for (int m = 0; m < kMessages; ++m) {
      for (int64_t i = 0; i < count; ++i) in[m * count + i] = Tag(r, m, i);
    }
    send.Upload(r, Encode(t, in));
  }
  // Each rank sends 3 messages to r+1 (two in one batch, one in the next
  // batch) and receives 3 from r-1; order per pair decides what lands where.
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    auto at = [&](Buffers& b, int m) { return static_cast<char*>(b.at(r)) + m * count * 4; };
    const P2POp first[] = {P2POp::Send(next, at(send, 0), count, t), P2POp::Recv(prev, at(recv, 0), count, t),
                           P2POp::Send(next, at(send, 1), count, t), P2POp::Recv(prev, at(recv, 1), count, t)};
    TANDEM_RETURN_IF_ERROR(PostAndWait(c.SendRecv(first), Deadline::In(kTimeout)));
    const P2POp second[] = {P2POp::Recv(prev, at(recv, 2), count, t), P2POp::Send(next, at(send, 2), count, t)};
    return PostAndWait(c.SendRecv(second), Deadline::In(kTimeout));
  }));
  for (int r = 0; r < n; ++r) {
    std::vector<double> want(kMessages * count);
    for (int m = 0; m < kMessages; ++m) {
      for (int64_t i = 0; i < count; ++i) want[m * count + i] = Tag((r + n - 1) % n, m, i);
    }
    EXPECT_EQ(FirstMismatch(t, recv.Download(r), Encode(t, want)), -1) << "rank " << r;
  }
}

// Many sends posted before the receiver posts anything (as a pipeline rank
// posts its sends and waits for them at the end of the step): every one
// arrives, in order, however far behind the receiver is.
TEST_P(ConformanceTest, ManySendsPostedAheadOfTheReceiverAllArrive) {
  TANDEM_SETUP_OR_SKIP();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const DataType t = DataType::kF32;
  constexpr int kMessages = 600;
  constexpr int64_t kCount = 4;
  Buffers send(backend, n, kMessages * kCount * 4), recv(backend, n, kMessages * kCount * 4);
  std::vector<double> in(kMessages * kCount);
  for (int64_t i = 0; i < kMessages * kCount; ++i) in[i] = Tag(0, 1, i) + i / 10;
  send.Upload(0, Encode(t, in));
  absl::Notification all_posted;
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    if (r > 1) return absl::OkStatus();
    auto at = [&](Buffers& b, int m) { return static_cast<char*>(b.at(r)) + m * kCount * 4; };
    std::vector<std::unique_ptr<Work>> works;
    if (r == 1) all_posted.WaitForNotification();
    for (int m = 0; m < kMessages; ++m) {
      const P2POp op = r == 0 ? P2POp::Send(1, at(send, m), kCount, t) : P2POp::Recv(0, at(recv, m), kCount, t);
      TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Work> w, c.SendRecv({&op, 1}));
      works.push_back(std::move(w));
    }
    if (r == 0) all_posted.Notify();
    for (auto& w : works) TANDEM_RETURN_IF_ERROR(w->Wait(Deadline::In(kTimeout)));
    return absl::OkStatus();
  }));
  EXPECT_EQ(FirstMismatch(t, recv.Download(1), Encode(t, in)), -1);
}

// Ranks calling different operations get an error, not corrupt data; the
// communicator stays usable.
TEST_P(ConformanceTest, DisagreementIsAnErrorAndCommunicatorStaysUsable) {
  TANDEM_SETUP_OR_SKIP();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Buffers buf(backend, n, 64 * 4);
  const std::vector<absl::Status> s = RunRanks(comms, [&](int r, Communicator& c) {
    return PostAndWait(c.AllReduce(buf.at(r), buf.at(r), r == 0 ? 10 : 11, DataType::kF32, ReduceOp::kSum),
                       Deadline::In(kTimeout));
  });
  for (const absl::Status& st : s) {
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("ranks disagree: rank 0 called all_reduce f32 x10")));
  }
  // P2P count mismatch.
  const std::vector<absl::Status> p = RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    if (r > 1) return absl::OkStatus();
    const P2POp op =
        r == 0 ? P2POp::Send(1, buf.at(0), 4, DataType::kF32) : P2POp::Recv(0, buf.at(1), 5, DataType::kF32);
    return PostAndWait(c.SendRecv({&op, 1}), Deadline::In(kTimeout));
  });
  EXPECT_THAT(p[0], StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sent 4 f32, receive expects 5 f32")));
  EXPECT_THAT(p[1], StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sent 4 f32, receive expects 5 f32")));
  // Invalid arguments are rejected at post time.
  EXPECT_THAT(comms[0]->SendRecv({P2POp::Send(n, buf.at(0), 1, DataType::kF32)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("peer: expected a rank in 0..")));
  EXPECT_THAT(comms[0]->AllReduce(buf.at(0), buf.at(0), -1, DataType::kF32, ReduceOp::kSum),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count: expected >= 0, got -1")));
  EXPECT_THAT(comms[0]->AllReduce(buf.at(0), buf.at(0), 4, DataType::kBytes, ReduceOp::kSum),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("raw bytes cannot be reduced")));
  // Still usable.
  for (int r = 0; r < n; ++r) buf.Upload(r, Encode(DataType::kI32, std::vector<double>(64, r)));
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
    TANDEM_RETURN_IF_ERROR(PostAndWait(c.Barrier(), Deadline::In(kTimeout)));
    return PostAndWait(c.AllReduce(buf.at(r), buf.at(r), 64, DataType::kI32, ReduceOp::kSum), Deadline::In(kTimeout));
  }));
  EXPECT_EQ(FirstMismatch(DataType::kI32, buf.Download(n - 1),
                          Encode(DataType::kI32, std::vector<double>(64, n * (n - 1) / 2))),
            -1);
}

// A rank that never arrives makes every other rank fail within the deadline
// naming the operation and the missing rank; once it arrives, all complete.
TEST_P(ConformanceTest, HungRankIsNamedWithinTheDeadline) {
  TANDEM_SETUP_OR_SKIP();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Buffers buf(backend, n, 16 * 4);
  std::vector<std::unique_ptr<Work>> works(n);
  const int hung = n - 1;
  const absl::Time start = absl::Now();
  const std::vector<absl::Status> s = RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    if (r == hung) return absl::OkStatus();
    TANDEM_ASSIGN_OR_RETURN(works[r], c.AllReduce(buf.at(r), buf.at(r), 16, DataType::kF32, ReduceOp::kSum));
    return works[r]->Wait(Deadline::In(absl::Milliseconds(300)));
  });
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  for (int r = 0; r < hung; ++r) {
    EXPECT_THAT(s[r], StatusIs(absl::StatusCode::kDeadlineExceeded,
                               HasSubstr(absl::StrFormat("waiting for ranks [%d]", hung))));
    EXPECT_THAT(s[r], StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("all_reduce f32 x16")));
    EXPECT_THAT(s[r],
                StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(absl::StrFormat("last ops on rank %d", r))));
  }
  // The late rank arrives; everyone completes.
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    if (r == hung) {
      TANDEM_ASSIGN_OR_RETURN(works[r], c.AllReduce(buf.at(r), buf.at(r), 16, DataType::kF32, ReduceOp::kSum));
    }
    return works[r]->Wait(Deadline::In(kTimeout));
  }));
}

TEST_P(ConformanceTest, SplitRanksByKeyAndReducesWithinColor) {
  TANDEM_SETUP_OR_SKIP();
  std::vector<std::unique_ptr<Communicator>> subs(n);
  ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) -> absl::Status {
    const int color = r == n - 1 && n > 2 ? Communicator::kNoColor : r % 2;
    TANDEM_ASSIGN_OR_RETURN(subs[r], c.Split(color, /*key=*/-r, Deadline::In(kTimeout)));
    return absl::OkStatus();
  }));
  std::vector<int> members[2];
  for (int r = 0; r < n; ++r) {
    if (r == n - 1 && n > 2) {
      EXPECT_EQ(subs[r], nullptr);
      continue;
    }
    members[r % 2].push_back(r);
  }
  for (int color = 0; color < 2; ++color) {
    const std::vector<int>& m = members[color];
    for (size_t i = 0; i < m.size(); ++i) {
      ASSERT_NE(subs[m[i]], nullptr);
      EXPECT_EQ(subs[m[i]]->size(), static_cast<int>(m.size()));
      EXPECT_EQ(subs[m[i]]->rank(), static_cast<int>(m.size() - 1 - i));  // key = -rank reverses
    }
  }
  // Each color sums its members' ranks (in the backend's memory).
  Buffers value(backend, n, 8);
  std::vector<std::thread> threads;
  std::vector<absl::Status> st(n);
  for (int r = 0; r < n; ++r) {
    if (subs[r] == nullptr) continue;
    value.Upload(r, Encode(DataType::kI64, {static_cast<double>(r)}));
    threads.emplace_back([&, r] {
      st[r] = PostAndWait(subs[r]->AllReduce(value.at(r), value.at(r), 1, DataType::kI64, ReduceOp::kSum),
                          Deadline::In(kTimeout));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int color = 0; color < 2; ++color) {
    double sum = 0;
    for (int r : members[color]) sum += r;
    for (int r : members[color]) {
      EXPECT_OK(st[r]);
      EXPECT_EQ(FirstMismatch(DataType::kI64, value.Download(r), Encode(DataType::kI64, {sum})), -1) << "rank " << r;
    }
  }
}

TEST_P(ConformanceTest, RandomFloatsGiveIdenticalBitsEverywhereAndEveryRun) {
  TANDEM_SETUP_OR_SKIP();
  const int64_t count = 1000;
  std::vector<std::vector<char>> first;
  for (int run = 0; run < 2; ++run) {
    Buffers buf(backend, n, count * 4);
    for (int r = 0; r < n; ++r) {
      std::mt19937 rng(1234 + r);
      std::normal_distribution<float> d;
      std::vector<char> host(count * 4);
      for (int64_t i = 0; i < count; ++i) {
        const float f = d(rng);
        std::memcpy(host.data() + i * 4, &f, 4);
      }
      buf.Upload(r, host);
    }
    ExpectAllOk(RunRanks(comms, [&](int r, Communicator& c) {
      return PostAndWait(c.AllReduce(buf.at(r), buf.at(r), count, DataType::kF32, ReduceOp::kSum),
                         Deadline::In(kTimeout));
    }));
    std::vector<std::vector<char>> got;
    for (int r = 0; r < n; ++r) got.push_back(buf.Download(r));
    for (int r = 1; r < n; ++r) EXPECT_EQ(got[r], got[0]) << "rank " << r;
    if (run == 0) {
      first = got;
    } else {
      EXPECT_EQ(got[0], first[0]);
    }
  }
}

}  // namespace
}  // namespace tandem::comm::testing
