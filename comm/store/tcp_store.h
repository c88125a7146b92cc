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
// What a client that is not a rank can cost is bounded: before HELLO a
// frame may hold kMaxHelloFrameBytes and a connection lives hello_timeout;
// an idle connection is closed after idle_timeout (its client reconnects
// at its next request); at max_connections new connections are refused
// with an error that names the limit; the accept loop backs off when out of
// descriptors; a closed connection's thread is joined. With a job token,
// HELLO must carry it (protection against accidents and stray clients on a
// shared host, not against an attacker who can read the environment: the
// token travels in clear text).
//
// A client notices a frozen or dead server within answer_timeout: the
// server sends a heartbeat at least every wire::kHeartbeat while a GET or
// WAIT waits, and the client gives up after answer_timeout without any
// frame, naming the server, the request and the time waited.
//
// Example:
//   auto server = TcpStoreServer::Start("127.0.0.1", 0, /*world_size=*/4);
//   auto store = TcpStore::Connect("127.0.0.1", (*server)->port(), 0, 4, deadline);

#ifndef TANDEM_COMM_STORE_TCP_STORE_H_
#define TANDEM_COMM_STORE_TCP_STORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "comm/store/store.h"
#include "comm/store/wire.h"

namespace tandem::comm {

struct TcpStoreServerOptions {
  int max_connections = 1024;
  absl::Duration hello_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Hours(1);
  std::string job_token;  // empty: HELLO needs none
};

class TcpStoreServer {
 public:
  // Start()
  //
  // Listens on host:port (port 0 picks a free one) for `world_size` ranks
  // (0: any world size, as ranks introduce themselves: the store an elastic
  // launcher hosts across memberships).
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& host, int port, int world_size,
                                                               const TcpStoreServerOptions& options = {});
  ~TcpStoreServer();

  int port() const { return port_; }

 private:
  TcpStoreServer(int fd, int port, int world_size, TcpStoreServerOptions options)
      : listen_fd_(fd), port_(port), world_size_(world_size), options_(std::move(options)) {}
  void AcceptLoop();
  void Serve(int fd, int id);
  // Answers one request; false ends the connection.
  bool Answer(int fd, const wire::Request& req, bool* hello);
  void JoinFinished() ABSL_LOCKS_EXCLUDED(mu_);

  const int listen_fd_;
  const int port_;
  const int world_size_;
  const TcpStoreServerOptions options_;
  std::atomic<bool> stopping_{false};
  MemoryStore data_;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<int> finished_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

struct TcpStoreOptions {
  std::string job_token;                              // sent with HELLO when not empty
  absl::Duration answer_timeout = absl::Seconds(30);  // silence that means the server is gone
};

class TcpStore : public Store {
 public:
  // Connect()
  //
  // Connects (retrying until `deadline`, as the server may start later) and
  // introduces itself as `rank` of `world_size`.
  static absl::StatusOr<std::unique_ptr<TcpStore>> Connect(const std::string& host, int port, int rank, int world_size,
                                                           Deadline deadline, const TcpStoreOptions& options = {});
  ~TcpStore() override;

  absl::Status Set(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> Get(absl::string_view key, Deadline deadline) override;
  absl::Status Wait(absl::Span<const std::string> keys, Deadline deadline) override;
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) override;
  absl::StatusOr<bool> Delete(absl::string_view key) override;
  absl::StatusOr<bool> Check(absl::string_view key) override;

 private:
  TcpStore(std::string host, int port, int rank, int world_size, TcpStoreOptions options);
  // Opens the connection and says HELLO.
  absl::Status Open(Deadline deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends one request and reads the reply payload (after the status byte),
  // reconnecting once when the server closed this connection for idleness,
  // and first when the last request ended without its reply.
  absl::StatusOr<std::string> Call(const wire::Request& request, Deadline deadline);
  absl::StatusOr<std::string> CallOnce(const wire::Request& request, Deadline deadline, bool* closed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string host_;
  const int port_, rank_, world_size_;
  const TcpStoreOptions options_;
  const std::string where_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  // The last request ended without its reply, which may still arrive: the
  // next one starts on a new connection.
  bool reopen_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tandem::comm

#endif  // TANDEM_COMM_STORE_TCP_STORE_H_
