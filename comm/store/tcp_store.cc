#include "comm/store/tcp_store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/store/wire.h"

namespace tandem::comm {
namespace {

constexpr int kMaxConnections = 4096;

// Waits until fd is readable (or writable) or the deadline passes.
bool PollUntil(int fd, short events, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, events, 0};
    const int ms = left == absl::InfiniteDuration()
                       ? 1000
                       : static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000));
    const int n = ::poll(&p, 1, ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// All of `data`, or false (peer gone or deadline).
bool SendAll(int fd, absl::string_view data, absl::Time deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    if (!PollUntil(fd, POLLOUT, deadline)) return false;
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
    sent += n;
  }
  return true;
}

bool RecvAll(int fd, char* out, size_t bytes, absl::Time deadline) {
  size_t got = 0;
  while (got < bytes) {
    if (!PollUntil(fd, POLLIN, deadline)) return false;
    const ssize_t n = ::recv(fd, out + got, bytes - got, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
    got += n;
  }
  return true;
}

// One frame's payload, or an error describing why none could be read.
absl::StatusOr<std::string> RecvFrame(int fd, absl::Time deadline) {
  char len[4];
  if (!RecvAll(fd, len, 4, deadline)) return absl::UnavailableError("connection closed or timed out");
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(len[i])} << (8 * i);
  if (n > wire::kMaxFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store frame: %d bytes exceeds the limit of %d", n, wire::kMaxFrameBytes));
  }
  std::string payload(n, '\0');
  if (!RecvAll(fd, payload.data(), n, deadline)) {
    return absl::UnavailableError(absl::StrFormat("truncated frame: expected %d bytes", n));
  }
  return payload;
}

std::string Reply(wire::Reply status, absl::string_view body) {
  std::string p(1, static_cast<char>(status));
  p.append(body.data(), body.size());
  return wire::Frame(p);
}

// A timeout also carries the keys still missing (i64 n, n x str).
std::string ErrorReply(const absl::Status& s) {
  std::string body;
  wire::PutInt(static_cast<int64_t>(s.code()), &body);
  wire::PutString(s.message(), &body);
  if (!absl::IsDeadlineExceeded(s)) return Reply(wire::Reply::kError, body);
  const std::vector<std::string> missing = MissingKeys(s);
  wire::PutInt(static_cast<int64_t>(missing.size()), &body);
  for (const std::string& k : missing) wire::PutString(k, &body);
  return Reply(wire::Reply::kTimeout, body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host, int port,
                                                                      int world_size) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("store server: world_size: expected >= 1, got %d", world_size));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrFormat("store server: '%s' is not an IPv4 address", host));
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("store server: socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(absl::StrFormat("store server: cannot listen on %s:%d (%s)", host, port, why));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(fd, ntohs(addr.sin_port), world_size));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

TcpStoreServer::~TcpStoreServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    // Stop reading but let replies in flight go out (a client's last request
    // may have woken the rank that is shutting the server down).
    for (int fd : fds_) ::shutdown(fd, SHUT_RD);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
}

void TcpStoreServer::AcceptLoop() {
  while (!stopping_) {
    if (!PollUntil(listen_fd_, POLLIN, absl::Now() + absl::Milliseconds(200))) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    if (stopping_ || static_cast<int>(fds_.size()) >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TcpStoreServer::Serve(int fd) {
  bool hello = false;
  while (!stopping_) {
    // Idle connections wait forever; a started frame must finish in 30 s.
    if (!PollUntil(fd, POLLIN, absl::Now() + absl::Milliseconds(200))) continue;
    absl::StatusOr<std::string> payload = RecvFrame(fd, absl::Now() + absl::Seconds(30));
    if (!payload.ok()) {
      if (absl::IsInvalidArgument(payload.status()))
        SendAll(fd, ErrorReply(payload.status()), absl::Now() + absl::Seconds(1));
      break;
    }
    absl::StatusOr<wire::Request> req = wire::DecodeRequest(*payload);
    if (!req.ok()) {
      SendAll(fd, ErrorReply(req.status()), absl::Now() + absl::Seconds(1));
      break;
    }
    if (!hello && req->op != wire::OpCode::kHello) {
      SendAll(fd, ErrorReply(absl::FailedPreconditionError("store: expected HELLO as the first request")),
              absl::Now() + absl::Seconds(1));
      break;
    }
    std::string body;
    absl::Status status;
    switch (req->op) {
      case wire::OpCode::kHello:
        if (req->number2 != world_size_ || req->number < 0 || req->number >= world_size_) {
          status = absl::InvalidArgumentError(
              absl::StrFormat("store: unknown rank %d of world size %d (the server expects ranks 0..%d of %d)",
                              req->number, req->number2, world_size_ - 1, world_size_));
        }
        hello = status.ok();
        break;
      case wire::OpCode::kSet:
        status = data_.Set(req->keys[0], req->value);
        break;
      case wire::OpCode::kGet: {
        // Wait in slices so that shutdown is never blocked for long.
        const Deadline whole = Deadline::In(absl::Milliseconds(req->timeout_ms));
        absl::StatusOr<std::string> v = absl::DeadlineExceededError("");
        do {
          v = data_.Get(req->keys[0], whole.Slice(absl::Milliseconds(200)));
        } while (absl::IsDeadlineExceeded(v.status()) && !whole.expired() && !stopping_);
        if (v.ok()) wire::PutString(*v, &body);
        status = v.status();
        break;
      }
      case wire::OpCode::kWait: {
        const Deadline whole = Deadline::In(absl::Milliseconds(req->timeout_ms));
        do {
          status = data_.Wait(req->keys, whole.Slice(absl::Milliseconds(200)));
        } while (absl::IsDeadlineExceeded(status) && !whole.expired() && !stopping_);
        break;
      }
      case wire::OpCode::kAdd: {
        absl::StatusOr<int64_t> v = data_.Add(req->keys[0], req->number);
        if (v.ok()) wire::PutInt(*v, &body);
        status = v.status();
        break;
      }
      case wire::OpCode::kDelete:
      case wire::OpCode::kCheck: {
        absl::StatusOr<bool> v =
            req->op == wire::OpCode::kDelete ? data_.Delete(req->keys[0]) : data_.Check(req->keys[0]);
        if (v.ok()) wire::PutInt(*v ? 1 : 0, &body);
        status = v.status();
        break;
      }
    }
    const std::string reply = status.ok() ? Reply(wire::Reply::kOk, body) : ErrorReply(status);
    if (!SendAll(fd, reply, absl::Now() + absl::Seconds(30))) break;
    if (req->op == wire::OpCode::kHello && !hello) break;
  }
  absl::MutexLock lock(&mu_);
  ::close(fd);
  fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
}

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Connect(const std::string& host, int port, int rank, int world_size,
                                                            Deadline deadline) {
  const std::string where = absl::StrFormat("store %s:%d", host, port);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), absl::StrCat(port).c_str(), &hints, &res) != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": cannot resolve host"));
  }
  int fd = -1;
  std::string last_error = "no attempt";
  while (true) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
    last_error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (deadline.expired()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    return absl::DeadlineExceededError(absl::StrFormat("%s: rank %d could not connect: deadline %s exceeded (%s)",
                                                       where, rank, absl::FormatDuration(deadline.timeout()),
                                                       last_error));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::unique_ptr<TcpStore> store(new TcpStore(fd, where));
  wire::Request hello;
  hello.op = wire::OpCode::kHello;
  hello.number = rank;
  hello.number2 = world_size;
  TANDEM_RETURN_IF_ERROR(store->Call(wire::EncodeRequest(hello), deadline).status());
  return store;
}

TcpStore::~TcpStore() { ::close(fd_); }

absl::StatusOr<std::string> TcpStore::Call(const std::string& payload, Deadline deadline) {
  absl::MutexLock lock(&mu_);
  // Replies to waiting requests come after their server-side timeout.
  const absl::Time until =
      deadline.time() == absl::InfiniteFuture() ? deadline.time() : deadline.time() + absl::Seconds(5);
  if (!SendAll(fd_, wire::Frame(payload), until)) {
    return absl::UnavailableError(absl::StrCat(where_, ": server unreachable (send failed)"));
  }
  absl::StatusOr<std::string> reply = RecvFrame(fd_, until);
  if (!reply.ok()) return absl::UnavailableError(absl::StrCat(where_, ": no reply (", reply.status().message(), ")"));
  wire::Reader in(*reply);
  uint8_t status = 0;
  if (!in.Byte(&status)) return absl::InternalError(absl::StrCat(where_, ": empty reply"));
  const std::string body = reply->substr(1);
  if (status == static_cast<uint8_t>(wire::Reply::kOk)) return body;
  int64_t code = 0;
  std::string message;
  wire::Reader err(body);
  if (!err.Int(&code) || !err.String(&message, wire::kMaxFrameBytes) || code <= 0 || code > 16) {
    return absl::InternalError(absl::StrCat(where_, ": malformed error reply"));
  }
  if (status == static_cast<uint8_t>(wire::Reply::kTimeout)) {
    int64_t n = 0;
    std::vector<std::string> missing;
    if (err.Int(&n) && n >= 0 && n <= wire::kMaxWaitKeys) {
      std::string k;
      for (int64_t i = 0; i < n && err.String(&k, kMaxStoreKeyBytes); ++i) missing.push_back(k);
    }
    return WithMissingKeys(absl::DeadlineExceededError(message), missing);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat(where_, ": ", message));
}

namespace {

int64_t TimeoutMs(Deadline d) {
  if (d.time() == absl::InfiniteFuture()) return int64_t{1} << 40;
  return absl::ToInt64Milliseconds(d.Remaining());
}

}  // namespace

absl::Status TcpStore::Set(absl::string_view key, absl::string_view value) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, value.size()));
  wire::Request r;
  r.op = wire::OpCode::kSet;
  r.keys = {std::string(key)};
  r.value = std::string(value);
  return Call(wire::EncodeRequest(r), Deadline::In(absl::Seconds(60))).status();
}

absl::StatusOr<std::string> TcpStore::Get(absl::string_view key, Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kGet;
  r.keys = {std::string(key)};
  r.timeout_ms = TimeoutMs(deadline);
  absl::StatusOr<std::string> body = Call(wire::EncodeRequest(r), deadline);
  // A timeout in this client's terms (its whole deadline).
  if (absl::IsDeadlineExceeded(body.status())) return StoreTimeout("get", deadline, {std::string(key)});
  if (!body.ok()) return body.status();
  std::string value;
  wire::Reader in(*body);
  if (!in.String(&value, kMaxStoreValueBytes))
    return absl::InternalError(absl::StrCat(where_, ": malformed get reply"));
  return value;
}

absl::Status TcpStore::Wait(absl::Span<const std::string> keys, Deadline deadline) {
  if (static_cast<int64_t>(keys.size()) > wire::kMaxWaitKeys) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store wait: expected at most %d keys, got %d", wire::kMaxWaitKeys, keys.size()));
  }
  for (const std::string& k : keys) TANDEM_RETURN_IF_ERROR(CheckKeyValue(k, 0));
  wire::Request r;
  r.op = wire::OpCode::kWait;
  r.keys.assign(keys.begin(), keys.end());
  r.timeout_ms = TimeoutMs(deadline);
  const absl::Status s = Call(wire::EncodeRequest(r), deadline).status();
  // A timeout in this client's terms, with the keys the server found missing.
  return absl::IsDeadlineExceeded(s) ? StoreTimeout("wait", deadline, MissingKeys(s)) : s;
}

absl::StatusOr<int64_t> TcpStore::Add(absl::string_view key, int64_t delta) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kAdd;
  r.keys = {std::string(key)};
  r.number = delta;
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(wire::EncodeRequest(r), Deadline::In(absl::Seconds(60))));
  int64_t v = 0;
  wire::Reader in(body);
  if (!in.Int(&v)) return absl::InternalError(absl::StrCat(where_, ": malformed add reply"));
  return v;
}

absl::StatusOr<bool> TcpStore::Delete(absl::string_view key) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kDelete;
  r.keys = {std::string(key)};
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(wire::EncodeRequest(r), Deadline::In(absl::Seconds(60))));
  int64_t v = 0;
  wire::Reader(body).Int(&v);
  return v != 0;
}

absl::StatusOr<bool> TcpStore::Check(absl::string_view key) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kCheck;
  r.keys = {std::string(key)};
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(wire::EncodeRequest(r), Deadline::In(absl::Seconds(60))));
  int64_t v = 0;
  wire::Reader(body).Int(&v);
  return v != 0;
}

}  // namespace tandem::comm
