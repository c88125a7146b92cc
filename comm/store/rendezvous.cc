#include "comm/store/rendezvous.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/store/wire.h"

namespace tandem::comm {
namespace {

// The first of `names` that is set, or nullptr.
const char* First(const GetEnv& env, std::initializer_list<const char*> names, const char** which) {
  for (const char* n : names) {
    if (const char* v = env(n); v != nullptr && *v != '\0') {
      *which = n;
      return v;
    }
  }
  *which = *names.begin();
  return nullptr;
}

absl::Status IntVar(const GetEnv& env, std::initializer_list<const char*> names, int lo, int hi,
                    absl::string_view range, bool required, int* out) {
  const char* which = nullptr;
  const char* v = First(env, names, &which);
  if (v == nullptr) {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: not set (launch with tools/launch.sh, torchrun or mpirun)", which));
  }
  int x = 0;
  if (!absl::SimpleAtoi(v, &x) || x < lo || x > hi) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: expected an integer in %s, got '%s'", which, range, v));
  }
  *out = x;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RendezvousInfo> ReadRendezvousEnv(const GetEnv& getenv) {
  const GetEnv env = getenv ? getenv : [](const char* n) -> const char* { return std::getenv(n); };
  RendezvousInfo info;
  TANDEM_RETURN_IF_ERROR(IntVar(env, {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}, 1, 1 << 20, "[1, 1048576]",
                                true, &info.world_size));
  const std::string range = absl::StrFormat("[0, WORLD_SIZE=%d)", info.world_size);
  TANDEM_RETURN_IF_ERROR(
      IntVar(env, {"RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"}, 0, info.world_size - 1, range, true, &info.rank));
  TANDEM_RETURN_IF_ERROR(IntVar(env, {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"}, 0, info.world_size - 1, range, false,
                                &info.local_rank));
  TANDEM_RETURN_IF_ERROR(IntVar(env, {"MASTER_PORT"}, 1, 65535, "[1, 65535]", false, &info.master_port));
  if (const char* addr = env("MASTER_ADDR"); addr != nullptr && *addr != '\0') info.master_addr = addr;
  if (const char* token = env("TANDEM_JOB_TOKEN"); token != nullptr) {
    info.job_token = token;
    if (static_cast<int64_t>(info.job_token.size()) > wire::kMaxJobTokenBytes) {
      return absl::InvalidArgumentError(absl::StrFormat("TANDEM_JOB_TOKEN: expected at most %d bytes, got %d",
                                                        wire::kMaxJobTokenBytes, info.job_token.size()));
    }
  }
  TANDEM_RETURN_IF_ERROR(IntVar(env, {"TANDEM_GENERATION"}, 0, 1 << 20, "[0, 1048576]", false, &info.generation));
  if (const char* host = env("TANDEM_STORE_HOST"); host != nullptr && *host != '\0') {
    if (std::string(host) != "launcher" && std::string(host) != "rank0") {
      return absl::InvalidArgumentError(
          absl::StrFormat("TANDEM_STORE_HOST: expected launcher or rank0, got '%s'", std::string(host).substr(0, 40)));
    }
    info.launcher_hosts_store = std::string(host) == "launcher";
  }
  if (const char* t = env("TANDEM_STORE_TIMEOUT"); t != nullptr && *t != '\0') {
    double seconds = 0;
    if (!absl::SimpleAtod(t, &seconds) || !(seconds > 0 && seconds <= 86400)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("TANDEM_STORE_TIMEOUT: expected seconds in (0, 86400], got '%s'", t));
    }
    info.store_timeout = absl::Seconds(seconds);
  }
  return info;
}

namespace {

std::string StoreHost(const RendezvousInfo& info) {
  return info.master_addr == "localhost" ? "127.0.0.1" : info.master_addr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStore>> ConnectStore(const RendezvousInfo& info, Deadline deadline) {
  TcpStoreOptions client;
  client.job_token = info.job_token;
  client.answer_timeout = info.store_timeout;
  return TcpStore::Connect(StoreHost(info), info.master_port, info.rank, info.world_size, deadline, client);
}

absl::StatusOr<Bootstrap> ConnectRendezvous(const RendezvousInfo& info, Deadline deadline) {
  Bootstrap b;
  b.info = info;
  if (info.rank == 0 && !info.launcher_hosts_store) {
    TcpStoreServerOptions server;
    server.job_token = info.job_token;
    TANDEM_ASSIGN_OR_RETURN(b.server,
                            TcpStoreServer::Start(StoreHost(info), info.master_port, info.world_size, server));
  }
  TANDEM_ASSIGN_OR_RETURN(b.store, ConnectStore(info, deadline));
  return b;
}

absl::Status Bootstrap::Finish(Deadline deadline) {
  const std::string kDone = absl::StrCat("tandem/bootstrap/g", info.generation, "/done"),
                    kAllDone = absl::StrCat("tandem/bootstrap/g", info.generation, "/all_done");
  TANDEM_ASSIGN_OR_RETURN(int64_t done, store->Add(kDone, 1));
  if (done == info.world_size) TANDEM_RETURN_IF_ERROR(store->Set(kAllDone, "1"));
  if (info.rank != 0 || info.launcher_hosts_store) return absl::OkStatus();
  absl::StatusOr<std::string> all = store->Get(kAllDone, deadline);
  if (!all.ok()) {
    return absl::Status(all.status().code(),
                        absl::StrFormat("rank 0 shutting down the store: %d of %d ranks checked out: %s",
                                        store->Add(kDone, 0).value_or(-1), info.world_size, all.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Bootstrap> BootstrapFromEnv(Deadline deadline) {
  TANDEM_ASSIGN_OR_RETURN(RendezvousInfo info, ReadRendezvousEnv());
  return ConnectRendezvous(info, deadline);
}

}  // namespace tandem::comm
