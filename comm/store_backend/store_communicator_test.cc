// The conformance suite on the `store` backend: threads sharing an in-memory
// store, and threads each with its own TCP client of one loopback server.
#include "comm/store_backend/store_communicator.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "comm/store/tcp_store.h"
#include "comm/testing/conformance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {
namespace {

using ::tandem::testing::StatusIs;

Backend StoreBackend(bool tcp) {
  Backend b = LocalBackend();  // host buffers
  b.name = tcp ? "store_tcp" : "store_memory";
  b.make_group = [tcp](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
    std::vector<std::unique_ptr<Communicator>> out;
    if (!tcp) {
      auto store = std::make_shared<MemoryStore>();
      for (int r = 0; r < n; ++r) out.push_back(MakeStoreCommunicator(store.get(), r, n, "t/", store));
      return out;
    }
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0, n);
    if (!server.ok()) return server.status();
    std::shared_ptr<TcpStoreServer> shared_server = *std::move(server);
    for (int r = 0; r < n; ++r) {
      absl::StatusOr<std::unique_ptr<TcpStore>> client =
          TcpStore::Connect("127.0.0.1", shared_server->port(), r, n, Deadline::In(absl::Seconds(10)));
      if (!client.ok()) return client.status();
      // Each rank's client keeps the server alive until the last rank is gone.
      struct Both {
        std::shared_ptr<TcpStoreServer> server;
        std::unique_ptr<TcpStore> client;
      };
      auto both = std::make_shared<Both>(Both{shared_server, *std::move(client)});
      out.push_back(MakeStoreCommunicator(both->client.get(), r, n, "t/", both));
    }
    return out;
  };
  return b;
}

INSTANTIATE_TEST_SUITE_P(Store, ConformanceTest,
                         ::testing::Combine(::testing::Values(StoreBackend(false), StoreBackend(true)),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const ::testing::TestParamInfo<ConformanceTest::ParamType>& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param), "ranks");
                         });

// A store whose host is gone right after the ranks' waits time out: waits
// and reads still answer, checks fail.
class GoneAfterTimeout : public Store {
 public:
  explicit GoneAfterTimeout(Store* inner) : inner_(inner) {}
  absl::Status Set(absl::string_view k, absl::string_view v) override { return inner_->Set(k, v); }
  absl::StatusOr<std::string> Get(absl::string_view k, Deadline d) override { return inner_->Get(k, d); }
  absl::Status Wait(absl::Span<const std::string> keys, Deadline d) override { return inner_->Wait(keys, d); }
  absl::StatusOr<int64_t> Add(absl::string_view k, int64_t delta) override { return inner_->Add(k, delta); }
  absl::StatusOr<bool> Delete(absl::string_view k) override { return inner_->Delete(k); }
  absl::StatusOr<bool> Check(absl::string_view) override { return absl::UnavailableError("store host gone"); }

 private:
  Store* inner_;
};

// Regression: when rank 2 never posted, the ranks other than the store's
// host said "waiting for ranks [] to post it" (they asked the store which
// contributions were missing after its host had exited). Every rank names
// rank 2.
TEST(StoreCommunicatorTest, EveryRankNamesTheRankThatNeverPosted) {
  MemoryStore memory;
  GoneAfterTimeout store(&memory);
  std::vector<absl::Status> status(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Communicator> c = MakeStoreCommunicator(&store, r, 3, "t/");
      float x = 1, y = 0;
      absl::StatusOr<std::unique_ptr<Work>> w = c->AllReduce(&x, &y, 1, DataType::kF32, ReduceOp::kSum);
      status[r] = w.ok() ? (*w)->Wait(Deadline::In(absl::Milliseconds(300))) : w.status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_THAT(status[r], StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::HasSubstr("waiting for ranks [2]")))
        << "rank " << r;
  }
}

}  // namespace
}  // namespace tandem::comm::testing
