// -----------------------------------------------------------------------------
// File: tcp_store.h
// -----------------------------------------------------------------------------
//
// The TCP store: TcpStoreServer (in rank 0) holds the data; TcpStore clients
// (every rank, rank 0 too) talk to it with the frames of wire.h. The server
// listens only on the address it is given, answers each connection on its
// own thread, and rejects malformed, truncated or oversize frames, requests
// before HELLO and ranks outside [0, world_size) with an error reply before
// closing that connection; other connections are unaffected.
//
// Example:
//   auto server = TcpStoreServer::Start("127.0.0.1", 0, /*world_size=*/4);
//   auto store = TcpStore::Connect("127.0.0.1", (*server)->port(), 0, 4, deadline);

#ifndef TANDEM_COMM_STORE_TCP_STORE_H_
#define TANDEM_COMM_STORE_TCP_STORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "comm/store/store.h"

namespace tandem::comm {

class TcpStoreServer {
 public:
  // Start()
  //
  // Listens on host:port (port 0 picks a free one) for `world_size` ranks.
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& host, int port, int world_size);
  ~TcpStoreServer();

  int port() const { return port_; }

 private:
  TcpStoreServer(int fd, int port, int world_size) : listen_fd_(fd), port_(port), world_size_(world_size) {}
  void AcceptLoop();
  void Serve(int fd);

  const int listen_fd_;
  const int port_;
  const int world_size_;
  std::atomic<bool> stopping_{false};
  MemoryStore data_;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

class TcpStore : public Store {
 public:
  // Connect()
  //
  // Connects (retrying until `deadline`, as the server may start later) and
  // introduces itself as `rank` of `world_size`.
  static absl::StatusOr<std::unique_ptr<TcpStore>> Connect(const std::string& host, int port, int rank, int world_size,
                                                           Deadline deadline);
  ~TcpStore() override;

  absl::Status Set(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> Get(absl::string_view key, Deadline deadline) override;
  absl::Status Wait(absl::Span<const std::string> keys, Deadline deadline) override;
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) override;
  absl::StatusOr<bool> Delete(absl::string_view key) override;
  absl::StatusOr<bool> Check(absl::string_view key) override;

 private:
  explicit TcpStore(int fd, std::string where) : fd_(fd), where_(std::move(where)) {}
  // Sends one request and reads the reply payload (after the status byte).
  absl::StatusOr<std::string> Call(const std::string& payload, Deadline deadline);

  const int fd_;
  const std::string where_;
  absl::Mutex mu_;
};

}  // namespace tandem::comm

#endif  // TANDEM_COMM_STORE_TCP_STORE_H_
