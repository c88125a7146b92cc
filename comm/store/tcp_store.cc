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

// One frame's payload (at most max_bytes), or an error describing why none
// could be read. Memory grows with the bytes that arrive, not with the
// length a peer declares.
absl::StatusOr<std::string> RecvFrame(int fd, absl::Time deadline, int64_t max_bytes, absl::string_view limit_name) {
  char len[4];
  if (!RecvAll(fd, len, 4, deadline)) return absl::UnavailableError("connection closed or timed out");
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(len[i])} << (8 * i);
  if (n > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store frame: %d bytes %s exceeds the limit of %d", n, limit_name, max_bytes));
  }
  constexpr size_t kChunk = 64 << 10;
  std::string payload;
  while (payload.size() < n) {
    const size_t at = payload.size();
    payload.resize(std::min<size_t>(n, at + kChunk));
    if (!RecvAll(fd, payload.data() + at, payload.size() - at, deadline)) {
      return absl::UnavailableError(absl::StrFormat("truncated frame: expected %d bytes", n));
    }
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

std::string ClosingReply(absl::string_view reason) {
  std::string body;
  wire::PutString(reason, &body);
  return Reply(wire::Reply::kClosing, body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host, int port, int world_size,
                                                                      const TcpStoreServerOptions& options) {
  if (world_size < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("store server: world_size: expected >= 0, got %d", world_size));
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store server: max_connections: expected >= 1, got %d", options.max_connections));
  }
  if (static_cast<int64_t>(options.job_token.size()) > wire::kMaxJobTokenBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("store server: job token: expected at most %d bytes, got %d",
                                                      wire::kMaxJobTokenBytes, options.job_token.size()));
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
  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(fd, ntohs(addr.sin_port), world_size, options));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

TcpStoreServer::~TcpStoreServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::map<int, std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    // Stop reading but let replies in flight go out (a client's last request
    // may have woken the rank that is shutting the server down).
    for (int fd : fds_) ::shutdown(fd, SHUT_RD);
    workers.swap(workers_);
  }
  for (auto& [id, t] : workers) t.join();
}

void TcpStoreServer::JoinFinished() {
  std::vector<std::thread> done;
  {
    absl::MutexLock lock(&mu_);
    for (int id : finished_) {
      auto it = workers_.find(id);
      if (it == workers_.end()) continue;
      done.push_back(std::move(it->second));
      workers_.erase(it);
    }
    finished_.clear();
  }
  for (std::thread& t : done) t.join();
}

void TcpStoreServer::AcceptLoop() {
  while (!stopping_) {
    JoinFinished();
    if (!PollUntil(listen_fd_, POLLIN, absl::Now() + absl::Milliseconds(200))) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors (or another transient failure): back off rather
      // than spin on a listening socket that stays readable.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        absl::SleepFor(absl::Milliseconds(100));
      }
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      continue;
    }
    if (static_cast<int>(fds_.size()) >= options_.max_connections) {
      const std::string refusal = ErrorReply(absl::ResourceExhaustedError(
          absl::StrFormat("store server on port %d: connection limit %d reached; connection refused", port_,
                          options_.max_connections)));
      ::send(fd, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fds_.push_back(fd);
    const int id = next_id_++;
    workers_.emplace(id, std::thread([this, fd, id] { Serve(fd, id); }));
  }
}

void TcpStoreServer::Serve(int fd, int id) {
  bool hello = false;
  const absl::Time hello_by = absl::Now() + options_.hello_timeout;
  absl::Time last = absl::Now();
  while (!stopping_) {
    const absl::Time expires = hello ? last + options_.idle_timeout : hello_by;
    if (absl::Now() >= expires) {
      SendAll(fd,
              ClosingReply(hello ? absl::StrFormat("idle for %s", absl::FormatDuration(options_.idle_timeout))
                                 : absl::StrFormat("no HELLO within %s", absl::FormatDuration(options_.hello_timeout))),
              absl::Now() + absl::Seconds(1));
      break;
    }
    if (!PollUntil(fd, POLLIN, std::min(expires, absl::Now() + absl::Milliseconds(200)))) continue;
    // A started frame must finish in 30 s.
    absl::StatusOr<std::string> payload =
        RecvFrame(fd, absl::Now() + absl::Seconds(30), hello ? wire::kMaxFrameBytes : wire::kMaxHelloFrameBytes,
                  hello ? "" : "before HELLO");
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
    if (!Answer(fd, *req, &hello)) break;
    last = absl::Now();
  }
  absl::MutexLock lock(&mu_);
  ::close(fd);
  fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  finished_.push_back(id);
}

bool TcpStoreServer::Answer(int fd, const wire::Request& req, bool* hello) {
  std::string body;
  absl::Status status;
  // Waits in slices so that shutdown is never blocked for long, with a
  // heartbeat to the client at least every wire::kHeartbeat.
  absl::Time beat = absl::Now();
  auto heartbeat = [&] {
    if (absl::Now() - beat < wire::kHeartbeat) return true;
    beat = absl::Now();
    return SendAll(fd, Reply(wire::Reply::kWorking, ""), absl::Now() + absl::Seconds(5));
  };
  switch (req.op) {
    case wire::OpCode::kHello:
      if ((world_size_ > 0 && req.number2 != world_size_) || req.number < 0 || req.number >= req.number2) {
        status = absl::InvalidArgumentError(
            absl::StrFormat("store: unknown rank %d of world size %d (the server expects ranks 0..%d of %d)",
                            req.number, req.number2, world_size_ - 1, world_size_));
      } else if (!options_.job_token.empty() && req.value.empty()) {
        status = absl::PermissionDeniedError(
            "store: no job token in HELLO, but this server's job has one (the launcher sets TANDEM_JOB_TOKEN for "
            "every rank)");
      } else if (!options_.job_token.empty() && req.value != options_.job_token) {
        status = absl::PermissionDeniedError("store: the job token does not match this server's job");
      }
      *hello = status.ok();
      break;
    case wire::OpCode::kSet:
      status = data_.Set(req.keys[0], req.value);
      break;
    case wire::OpCode::kGet: {
      const Deadline whole = Deadline::In(absl::Milliseconds(req.timeout_ms));
      absl::StatusOr<std::string> v = absl::DeadlineExceededError("");
      do {
        if (!heartbeat()) return false;
        v = data_.Get(req.keys[0], whole.Slice(absl::Milliseconds(200)));
      } while (absl::IsDeadlineExceeded(v.status()) && !whole.expired() && !stopping_);
      if (v.ok()) wire::PutString(*v, &body);
      status = v.status();
      break;
    }
    case wire::OpCode::kWait: {
      const Deadline whole = Deadline::In(absl::Milliseconds(req.timeout_ms));
      do {
        if (!heartbeat()) return false;
        status = data_.Wait(req.keys, whole.Slice(absl::Milliseconds(200)));
      } while (absl::IsDeadlineExceeded(status) && !whole.expired() && !stopping_);
      break;
    }
    case wire::OpCode::kAdd: {
      absl::StatusOr<int64_t> v = data_.Add(req.keys[0], req.number);
      if (v.ok()) wire::PutInt(*v, &body);
      status = v.status();
      break;
    }
    case wire::OpCode::kDelete:
    case wire::OpCode::kCheck: {
      absl::StatusOr<bool> v = req.op == wire::OpCode::kDelete ? data_.Delete(req.keys[0]) : data_.Check(req.keys[0]);
      if (v.ok()) wire::PutInt(*v ? 1 : 0, &body);
      status = v.status();
      break;
    }
  }
  const std::string reply = status.ok() ? Reply(wire::Reply::kOk, body) : ErrorReply(status);
  if (!SendAll(fd, reply, absl::Now() + absl::Seconds(30))) return false;
  return req.op != wire::OpCode::kHello || *hello;
}

TcpStore::TcpStore(std::string host, int port, int rank, int world_size, TcpStoreOptions options)
    : host_(std::move(host)),
      port_(port),
      rank_(rank),
      world_size_(world_size),
      options_(std::move(options)),
      where_(absl::StrFormat("store %s:%d", host_, port_)) {}

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Connect(const std::string& host, int port, int rank, int world_size,
                                                            Deadline deadline, const TcpStoreOptions& options) {
  std::unique_ptr<TcpStore> store(new TcpStore(host, port, rank, world_size, options));
  absl::MutexLock lock(&store->mu_);
  TANDEM_RETURN_IF_ERROR(store->Open(deadline));
  return store;
}

absl::Status TcpStore::Open(Deadline deadline) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host_.c_str(), absl::StrCat(port_).c_str(), &hints, &res) != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": cannot resolve host"));
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
                                                       where_, rank_, absl::FormatDuration(deadline.timeout()),
                                                       last_error));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fd_ = fd;
  wire::Request hello;
  hello.op = wire::OpCode::kHello;
  hello.number = rank_;
  hello.number2 = world_size_;
  hello.value = options_.job_token;
  bool closed = false;
  return CallOnce(hello, deadline, &closed).status();
}

TcpStore::~TcpStore() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::string> TcpStore::Call(const wire::Request& request, Deadline deadline) {
  absl::MutexLock lock(&mu_);
  if (reopen_) {
    TANDEM_RETURN_IF_ERROR(Open(Deadline::In(std::min(options_.answer_timeout, deadline.Remaining()))));
    reopen_ = false;
  }
  bool closed = false;
  absl::StatusOr<std::string> reply = CallOnce(request, deadline, &closed);
  if (!closed) return reply;
  // The server closed this idle connection without reading the request.
  TANDEM_RETURN_IF_ERROR(Open(Deadline::In(std::min(options_.answer_timeout, deadline.Remaining()))));
  return CallOnce(request, deadline, &closed);
}

absl::StatusOr<std::string> TcpStore::CallOnce(const wire::Request& request, Deadline deadline, bool* closed) {
  *closed = false;
  const std::string what = absl::StrFormat("%s (rank %d)", where_, rank_);
  // A server that closed this connection while it was idle left a notice.
  pollfd pending{fd_, POLLIN, 0};
  const bool notice = ::poll(&pending, 1, 0) > 0;
  if (!notice && !SendAll(fd_, wire::Frame(wire::EncodeRequest(request)), absl::Now() + options_.answer_timeout)) {
    return absl::UnavailableError(absl::StrCat(what, ": server unreachable (send failed)"));
  }
  // Replies to waiting requests come after their server-side timeout; until
  // then heartbeats show the server is alive.
  const absl::Time start = absl::Now();
  const absl::Time until =
      deadline.time() == absl::InfiniteFuture() ? deadline.time() : deadline.time() + absl::Seconds(5);
  absl::Time heard = start;
  while (true) {
    absl::StatusOr<std::string> reply =
        RecvFrame(fd_, std::min(until, absl::Now() + options_.answer_timeout), wire::kMaxFrameBytes, "");
    if (!reply.ok()) {
      if (notice) {  // the server is gone from this connection: reconnect
        *closed = true;
        return absl::UnavailableError(absl::StrCat(what, ": connection closed"));
      }
      reopen_ = true;
      const absl::Duration ms = absl::Milliseconds(1);
      const absl::Duration silent = absl::Now() - heard;
      if (absl::Now() >= until && silent < options_.answer_timeout) {
        // The host is alive but the request's deadline (and its grace) has
        // passed, for example while this process was stopped.
        return absl::DeadlineExceededError(absl::StrFormat("%s: no reply to %s by its deadline (%s in all)", what,
                                                           wire::OpName(request.op),
                                                           absl::FormatDuration(absl::Trunc(absl::Now() - start, ms))));
      }
      const std::string why = silent < options_.answer_timeout && absl::Now() < until
                                  ? "the store host closed the connection (it exited or was killed)"
                                  : absl::StrFormat("the store host stopped answering: nothing for %s",
                                                    absl::FormatDuration(absl::Trunc(silent, ms)));
      return absl::UnavailableError(absl::StrFormat("%s: %s while waiting for the reply to %s (%s in all)", what, why,
                                                    wire::OpName(request.op),
                                                    absl::FormatDuration(absl::Trunc(absl::Now() - start, ms))));
    }
    heard = absl::Now();
    wire::Reader in(*reply);
    uint8_t status = 0;
    if (!in.Byte(&status)) return absl::InternalError(absl::StrCat(what, ": empty reply"));
    const std::string body = reply->substr(1);
    if (status == static_cast<uint8_t>(wire::Reply::kWorking)) continue;
    if (status == static_cast<uint8_t>(wire::Reply::kClosing)) {
      *closed = true;
      return absl::UnavailableError(absl::StrCat(what, ": the server closed the connection"));
    }
    // Before a request the server may only have closed the connection or
    // refused it (at its connection limit, say): an error reply is that word.
    if (notice && status != static_cast<uint8_t>(wire::Reply::kError)) {
      return absl::InternalError(absl::StrCat(what, ": unexpected frame before a request"));
    }
    if (status == static_cast<uint8_t>(wire::Reply::kOk)) return body;
    int64_t code = 0;
    std::string message;
    wire::Reader err(body);
    if (!err.Int(&code) || !err.String(&message, wire::kMaxFrameBytes) || code <= 0 || code > 16) {
      return absl::InternalError(absl::StrCat(what, ": malformed error reply"));
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
  return Call(r, Deadline::In(options_.answer_timeout)).status();
}

absl::StatusOr<std::string> TcpStore::Get(absl::string_view key, Deadline deadline) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kGet;
  r.keys = {std::string(key)};
  r.timeout_ms = TimeoutMs(deadline);
  absl::StatusOr<std::string> body = Call(r, deadline);
  // A timeout in this client's terms (its whole deadline).
  if (IsStoreTimeout(body.status())) return StoreTimeout("get", deadline, {std::string(key)});
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
  const absl::Status s = Call(r, deadline).status();
  // The server's timeout in this client's terms, with the keys it found
  // missing; a request the host never answered keeps its own words.
  return IsStoreTimeout(s) ? StoreTimeout("wait", deadline, MissingKeys(s)) : s;
}

absl::StatusOr<int64_t> TcpStore::Add(absl::string_view key, int64_t delta) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kAdd;
  r.keys = {std::string(key)};
  r.number = delta;
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(r, Deadline::In(options_.answer_timeout)));
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
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(r, Deadline::In(options_.answer_timeout)));
  int64_t v = 0;
  wire::Reader(body).Int(&v);
  return v != 0;
}

absl::StatusOr<bool> TcpStore::Check(absl::string_view key) {
  TANDEM_RETURN_IF_ERROR(CheckKeyValue(key, 0));
  wire::Request r;
  r.op = wire::OpCode::kCheck;
  r.keys = {std::string(key)};
  TANDEM_ASSIGN_OR_RETURN(std::string body, Call(r, Deadline::In(options_.answer_timeout)));
  int64_t v = 0;
  wire::Reader(body).Int(&v);
  return v != 0;
}

}  // namespace tandem::comm
