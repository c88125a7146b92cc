// One rank of the multi-process test (started by tools/launch.sh): bootstraps
// from the environment over the TCP store and runs exact checks on the store
// backend. After the first collective, --fail_rank=K makes rank K exit 3 (the
// launcher fails fast), and --scenario=stall|kill|stop|kill_store makes rank
// K never post again, die by SIGKILL, stop (SIGSTOP), or, for rank 0 (the
// store's host), die: every other rank then reports what it saw and after how
// long ("rank R detected after S s: ...").
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "comm/store/rendezvous.h"
#include "comm/store_backend/store_communicator.h"

ABSL_FLAG(int, fail_rank, -1, "This rank exits with status 3 after the first collective.");
ABSL_FLAG(std::string, scenario, "", "stall, kill or stop (--fail_rank), or kill_store (rank 0)");
ABSL_FLAG(double, timeout_s, 60, "Deadline of each operation, in seconds.");

namespace tandem::comm {
namespace {

absl::Status Check(bool ok, const std::string& what) { return ok ? absl::OkStatus() : absl::InternalError(what); }

// All-reduce of exact integers: sum over ranks of (i + r).
absl::Status First(Communicator* comm, int rank, int n, absl::Duration timeout) {
  std::vector<int32_t> x(1000);
  for (int i = 0; i < 1000; ++i) x[i] = i + rank;
  TANDEM_RETURN_IF_ERROR(
      PostAndWait(comm->AllReduce(x.data(), x.data(), 1000, DataType::kI32, ReduceOp::kSum), Deadline::In(timeout)));
  for (int i = 0; i < 1000; ++i) {
    TANDEM_RETURN_IF_ERROR(
        Check(x[i] == n * i + n * (n - 1) / 2, absl::StrFormat("all_reduce element %d = %d", i, x[i])));
  }
  return absl::OkStatus();
}

// Everything after the first collective.
absl::Status Rest(Communicator* comm, int rank, int n, absl::Duration timeout) {
  const Deadline deadline = Deadline::In(timeout);
  // All-to-all-v with rank-dependent counts, tagged by (source, destination).
  std::vector<int64_t> sc(n), rc(n);
  for (int q = 0; q < n; ++q) sc[q] = (rank + q) % 3 + 1, rc[q] = (q + rank) % 3 + 1;
  std::vector<int32_t> send, recv(std::accumulate(rc.begin(), rc.end(), int64_t{0}));
  for (int q = 0; q < n; ++q) {
    for (int i = 0; i < sc[q]; ++i) send.push_back(rank * 100 + q * 10 + i);
  }
  TANDEM_RETURN_IF_ERROR(PostAndWait(comm->AllToAllV(send.data(), sc, recv.data(), rc, DataType::kI32), deadline));
  int64_t at = 0;
  for (int q = 0; q < n; ++q) {
    for (int i = 0; i < rc[q]; ++i, ++at) {
      TANDEM_RETURN_IF_ERROR(Check(recv[at] == q * 100 + rank * 10 + i, absl::StrFormat("all_to_all_v from %d", q)));
    }
  }
  // Ring exchange.
  float out = static_cast<float>(rank), in = -1;
  const P2POp ring[] = {P2POp::Send((rank + 1) % n, &out, 1, DataType::kF32),
                        P2POp::Recv((rank + n - 1) % n, &in, 1, DataType::kF32)};
  TANDEM_RETURN_IF_ERROR(PostAndWait(comm->SendRecv(ring), deadline));
  TANDEM_RETURN_IF_ERROR(Check(in == static_cast<float>((rank + n - 1) % n), "ring"));
  TANDEM_RETURN_IF_ERROR(PostAndWait(comm->Barrier(), deadline));
  std::printf("ok: rank %d of %d passed all_reduce, all_to_all_v, ring, barrier\n", rank, n);
  return absl::OkStatus();
}

absl::Status Main() {
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  TANDEM_ASSIGN_OR_RETURN(Bootstrap b, BootstrapFromEnv(Deadline::In(absl::Seconds(60))));
  const int rank = b.info.rank, n = b.info.world_size;
  std::unique_ptr<Communicator> comm = MakeStoreCommunicator(b.store.get(), rank, n);
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const absl::Time start = absl::Now();
  absl::Status s = First(comm.get(), rank, n, timeout);
  if (s.ok() && (rank == absl::GetFlag(FLAGS_fail_rank) || (scenario == "kill_store" && rank == 0))) {
    std::fprintf(stderr, "failing on purpose (%s)\n", scenario.empty() ? "exit 3" : scenario.c_str());
    std::fflush(stderr);
    if (scenario == "stall") absl::SleepFor(absl::Hours(1));
    if (scenario == "kill" || scenario == "kill_store") ::kill(::getpid(), SIGKILL);
    if (scenario == "stop") ::kill(::getpid(), SIGSTOP);
    std::exit(3);
  }
  if (s.ok()) s = Rest(comm.get(), rank, n, timeout);
  if (!scenario.empty()) {
    std::printf("rank %d detected after %.1f s: %s\n", rank, absl::ToDoubleSeconds(absl::Now() - start),
                std::string(s.message()).c_str());
    std::fflush(stdout);
    absl::SleepFor(absl::Seconds(2));  // so that every rank reports before the launcher stops them
  }
  TANDEM_RETURN_IF_ERROR(s);
  return b.Finish(Deadline::In(timeout));
}

}  // namespace
}  // namespace tandem::comm

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status s = tandem::comm::Main();
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
