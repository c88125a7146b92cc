// One rank of the multi-process test (started by tools/launch.sh): bootstraps
// from the environment over the TCP store and runs exact checks on the store
// backend. --fail_rank=K makes rank K exit 3 after the first collective, to
// prove the launcher fails fast.
#include <cstdio>
#include <numeric>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/store/rendezvous.h"
#include "comm/store_backend/store_communicator.h"

ABSL_FLAG(int, fail_rank, -1, "This rank exits with status 3 after the first collective.");

namespace tandem::comm {
namespace {

absl::Status Check(bool ok, const std::string& what) { return ok ? absl::OkStatus() : absl::InternalError(what); }

absl::Status Main() {
  const Deadline deadline = Deadline::In(absl::Seconds(60));
  TANDEM_ASSIGN_OR_RETURN(Bootstrap b, BootstrapFromEnv(deadline));
  const int rank = b.info.rank, n = b.info.world_size;
  std::unique_ptr<Communicator> comm = MakeStoreCommunicator(b.store.get(), rank, n);
  // All-reduce of exact integers: sum over ranks of (i + r).
  std::vector<int32_t> x(1000);
  for (int i = 0; i < 1000; ++i) x[i] = i + rank;
  TANDEM_RETURN_IF_ERROR(
      PostAndWait(comm->AllReduce(x.data(), x.data(), 1000, DataType::kI32, ReduceOp::kSum), deadline));
  for (int i = 0; i < 1000; ++i) {
    TANDEM_RETURN_IF_ERROR(
        Check(x[i] == n * i + n * (n - 1) / 2, absl::StrFormat("all_reduce element %d = %d", i, x[i])));
  }
  if (rank == absl::GetFlag(FLAGS_fail_rank)) {
    std::fprintf(stderr, "failing on purpose\n");
    std::exit(3);
  }
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
  return b.Finish(deadline);
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
