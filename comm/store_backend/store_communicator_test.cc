// The conformance suite on the `store` backend: threads sharing an in-memory
// store, and threads each with its own TCP client of one loopback server.
#include "comm/store_backend/store_communicator.h"

#include "absl/strings/str_cat.h"
#include "comm/store/tcp_store.h"
#include "comm/testing/conformance.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {
namespace {

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

}  // namespace
}  // namespace tandem::comm::testing
