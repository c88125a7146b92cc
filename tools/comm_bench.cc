// comm_bench: nccl-tests-style measurements of a Communicator backend.
//
//   comm_bench --backend=local|store|cuda_local|nccl --ranks=N
//              --op=allreduce|allgather|reducescatter|alltoall|sendrecv|dispatch|combine
//              --bytes=MIN[:MAX] [--iters=20] [--warmup=5]
//              [--tokens=T --hidden=H --topk=K --experts=E]   (dispatch, combine)
//
// Prints one JSON record per size: time per operation (avg, p50 and max
// over iterations of the slowest rank), algbw = S / t and busbw = algbw x F
// with nccl-tests' S and F (all-reduce 2(n-1)/n; all-gather, reduce-scatter,
// all-to-all (n-1)/n; send/recv 1), dispatch/combine logical bytes (rows x
// hidden x dtype, deduplicated per token and rank), and the memcpy bandwidth
// of the same memory measured in the same run, with the ratio to it. On
// cuda_local all virtual ranks share one GPU's memory, so its ratio compares
// device_GBps (the bytes all ranks move per second together: ranks x S / t)
// with one device-to-device copy; other backends compare algbw.
// `nccl` runs one process per GPU: start it with bazel-bin/tools/launch.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/strict_json.h"
#include "comm/local/local_communicator.h"
#include "comm/moe/dispatch.h"
#include "comm/store_backend/store_communicator.h"
#include "tools/cli.h"
#ifdef TANDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "base/cuda_check.h"
#include "comm/cuda_local/cuda_local_communicator.h"
#include "comm/moe/dispatch_gpu.h"
#include "comm/nccl/nccl_communicator.h"
#include "comm/store/rendezvous.h"
#endif

ABSL_FLAG(std::string, backend, "local", "local, store, cuda_local or nccl");
ABSL_FLAG(int, ranks, 4, "Ranks (threads) for local, store and cuda_local; nccl takes WORLD_SIZE.");
ABSL_FLAG(std::string, op, "alltoall", "allreduce, allgather, reducescatter, alltoall, sendrecv, dispatch, combine");
ABSL_FLAG(std::string, bytes, "1048576", "Bytes per rank (S of nccl-tests), or MIN:MAX doubling.");
ABSL_FLAG(int, iters, 20, "Timed iterations per size.");
ABSL_FLAG(int, warmup, 5, "Untimed iterations per size.");
ABSL_FLAG(int, tokens, 1024, "dispatch/combine: tokens per rank.");
ABSL_FLAG(int, hidden, 1024, "dispatch/combine: hidden size (f32).");
ABSL_FLAG(int, topk, 8, "dispatch/combine: experts per token.");
ABSL_FLAG(int, experts, 64, "dispatch/combine: experts in total (multiple of ranks).");
ABSL_FLAG(double, max_memory_gb, 0,
          "Refuse sizes whose buffers would exceed this many GiB (0: half of this machine's memory).");
ABSL_FLAG(bool, validate_only, false, "Check the flags and exit: 0 if they are valid, 2 if not.");

namespace tandem::comm {
namespace {

using Clock = std::chrono::steady_clock;

struct Memory {
  bool device = false;
  void* Alloc(int64_t bytes) const {
#ifdef TANDEM_WITH_CUDA
    if (device) {
      void* p = nullptr;
      cudaMalloc(&p, std::max<int64_t>(bytes, 1));
      cudaMemset(p, 1, std::max<int64_t>(bytes, 1));
      return p;
    }
#endif
    char* p = static_cast<char*>(::operator new(std::max<int64_t>(bytes, 1)));
    std::memset(p, 1, std::max<int64_t>(bytes, 1));
    return p;
  }
  void Free(void* p) const {
#ifdef TANDEM_WITH_CUDA
    if (device) {
      cudaFree(p);
      return;
    }
#endif
    ::operator delete(p);
  }
};

// Bandwidth of one copy of `bytes` in the same memory (bytes / time).
double MemcpyGBps(const Memory& m, int64_t bytes) {
  void* a = m.Alloc(bytes);
  void* b = m.Alloc(bytes);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
#ifdef TANDEM_WITH_CUDA
    if (m.device) {
      cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
      cudaDeviceSynchronize();
    } else
#endif
      std::memcpy(b, a, bytes);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, bytes / s / 1e9);
  }
  m.Free(a);
  m.Free(b);
  return best;
}

struct Result {
  std::vector<double> seconds;     // per iteration: the slowest rank
  double logical_bytes = 0;        // the largest rank's
  double total_logical_bytes = 0;  // all ranks together
};

// Runs `iters` timed operations on every rank; each iteration starts after a
// barrier and its time is the slowest rank's.
absl::StatusOr<Result> Measure(std::vector<Communicator*>& comms, const Memory& mem, const std::string& op,
                               int64_t bytes) {
  const int n = static_cast<int>(comms.size());
  const int world = comms[0]->size();
  const int iters = absl::GetFlag(FLAGS_iters), warmup = absl::GetFlag(FLAGS_warmup);
  std::vector<std::vector<double>> times(n);
  std::vector<absl::Status> status(n);
  std::vector<double> logical(n, 0);
  auto body = [&](int i) -> absl::Status {
    Communicator& c = *comms[i];
    const Deadline deadline = Deadline::In(absl::Minutes(5));
    const int me = c.rank();
    const int64_t count = bytes / 4;  // f32 elements
    // Buffers sized for the largest use of this op.
    const bool moe = op == "dispatch" || op == "combine";
    void* send = mem.Alloc(moe ? 1 : bytes);
    void* recv = mem.Alloc(moe ? 1 : (op == "allgather" ? bytes * world : bytes));
    std::unique_ptr<moe::Dispatched> dispatched;
#ifdef TANDEM_WITH_CUDA
    std::unique_ptr<moe::DispatchedGpu> dispatched_gpu;
    moe::DeviceBuffer x_dev;
    cudaStream_t stream = CudaLocalStream(c);
#endif
    std::vector<float> x, w;
    std::vector<int64_t> idx;
    if (moe) {
      const int tokens = absl::GetFlag(FLAGS_tokens), hidden = absl::GetFlag(FLAGS_hidden);
      const int k = absl::GetFlag(FLAGS_topk), experts = absl::GetFlag(FLAGS_experts);
      std::mt19937 rng(1234 + me);
      x.assign(int64_t{tokens} * hidden, 1.0f);
      for (int t = 0; t < tokens; ++t) {
        std::vector<int64_t> pick;
        while (static_cast<int>(pick.size()) < std::min(k, experts)) {
          const int64_t e = rng() % experts;
          if (std::find(pick.begin(), pick.end(), e) == pick.end()) pick.push_back(e);
        }
        pick.resize(k, -1);
        for (int64_t e : pick) idx.push_back(e), w.push_back(1.0f / k);
      }
#ifdef TANDEM_WITH_CUDA
      if (mem.device) {
        TANDEM_ASSIGN_OR_RETURN(x_dev, moe::AllocDevice(x.size() * 4));
        TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpy(x_dev.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
      }
#endif
    }
    auto run_once = [&]() -> absl::Status {
      if (op == "allreduce")
        return PostAndWait(c.AllReduce(send, recv, count, DataType::kF32, ReduceOp::kSum), deadline);
      if (op == "allgather") return PostAndWait(c.AllGather(send, recv, count, DataType::kF32), deadline);
      if (op == "reducescatter") {
        return PostAndWait(c.ReduceScatter(send, recv, count / world, DataType::kF32, ReduceOp::kSum), deadline);
      }
      if (op == "alltoall") return PostAndWait(c.AllToAll(send, recv, count / world, DataType::kF32), deadline);
      if (op == "sendrecv") {
        const P2POp ring[] = {P2POp::Send((me + 1) % world, send, count, DataType::kF32),
                              P2POp::Recv((me + world - 1) % world, recv, count, DataType::kF32)};
        return PostAndWait(c.SendRecv(ring), deadline);
      }
      const int tokens = absl::GetFlag(FLAGS_tokens), hidden = absl::GetFlag(FLAGS_hidden);
      const moe::Routing routing{tokens, absl::GetFlag(FLAGS_topk), absl::GetFlag(FLAGS_experts), idx, w};
#ifdef TANDEM_WITH_CUDA
      if (mem.device) {  // rows stay on the device; returns once `stream` is idle
        if (op == "dispatch" || dispatched_gpu == nullptr) {
          TANDEM_ASSIGN_OR_RETURN(moe::DispatchedGpu d, moe::DispatchGpu(c, x_dev.get(), DataType::kF32, hidden,
                                                                         routing, {}, stream, deadline));
          dispatched_gpu = std::make_unique<moe::DispatchedGpu>(std::move(d));
          logical[i] = static_cast<double>(dispatched_gpu->num_rows) * hidden * 4;
        }
        if (op == "combine") {
          TANDEM_ASSIGN_OR_RETURN(
              moe::DeviceBuffer out,
              moe::CombineGpu(c, dispatched_gpu->handle, dispatched_gpu->x.get(), DataType::kF32, stream, deadline));
        }
        TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
        return absl::OkStatus();
      }
#endif
      if (op == "dispatch" || dispatched == nullptr) {
        TANDEM_ASSIGN_OR_RETURN(moe::Dispatched d,
                                moe::Dispatch(c, x.data(), DataType::kF32, hidden, routing, {}, deadline));
        dispatched = std::make_unique<moe::Dispatched>(std::move(d));
        logical[i] = static_cast<double>(dispatched->num_rows) * hidden * 4;
        if (op == "dispatch") return absl::OkStatus();
      }
      TANDEM_ASSIGN_OR_RETURN(std::vector<char> out,
                              moe::Combine(c, dispatched->handle, dispatched->x.data(), DataType::kF32, deadline));
      return absl::OkStatus();
    };
    for (int it = 0; it < warmup + iters; ++it) {
      TANDEM_RETURN_IF_ERROR(PostAndWait(c.Barrier(), deadline));
      const auto t0 = Clock::now();
      TANDEM_RETURN_IF_ERROR(run_once());
      if (it >= warmup) times[i].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    mem.Free(send);
    mem.Free(recv);
    return absl::OkStatus();
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { status[i] = body(i); });
  for (auto& t : threads) t.join();
  for (const absl::Status& s : status) TANDEM_RETURN_IF_ERROR(s);
  Result r;
  for (int it = 0; it < iters; ++it) {
    double slowest = 0;
    for (int i = 0; i < n; ++i) slowest = std::max(slowest, times[i][it]);
    r.seconds.push_back(slowest);
  }
  r.logical_bytes = *std::max_element(logical.begin(), logical.end());
  r.total_logical_bytes = std::accumulate(logical.begin(), logical.end(), 0.0);
  return r;
}

// nccl-tests: S and the bus bandwidth factor.
double BusFactor(const std::string& op, int n) {
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "allgather" || op == "reducescatter" || op == "alltoall") return static_cast<double>(n - 1) / n;
  return 1.0;
}

// The flags, checked before anything is allocated; the byte range.
absl::StatusOr<std::pair<int64_t, int64_t>> CheckFlags() {
  const std::string op = absl::GetFlag(FLAGS_op);
  const int n = absl::GetFlag(FLAGS_ranks), experts = absl::GetFlag(FLAGS_experts);
  static const char* const kOps[] = {"allreduce", "allgather", "reducescatter", "alltoall",
                                     "sendrecv",  "dispatch",  "combine"};
  if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--op: expected allreduce, allgather, reducescatter, alltoall, sendrecv, dispatch or combine, got '%s'",
        json::Excerpt(op, 40)));
  }
  const std::string backend = absl::GetFlag(FLAGS_backend);
#ifdef TANDEM_WITH_CUDA
  const bool known = backend == "local" || backend == "store" || backend == "cuda_local" || backend == "nccl";
#else
  const bool known = backend == "local" || backend == "store";
#endif
  if (!known) {
    return absl::InvalidArgumentError(absl::StrFormat("--backend: expected local, store%s, got '%s'",
#ifdef TANDEM_WITH_CUDA
                                                      ", cuda_local or nccl",
#else
                                                      " (this build has no CUDA: use comm_bench_gpu)",
#endif
                                                      json::Excerpt(backend, 40)));
  }
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("ranks", n, 1, 256));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("iters", absl::GetFlag(FLAGS_iters), 1, 1000000));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("warmup", absl::GetFlag(FLAGS_warmup), 0, 1000000));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("tokens", absl::GetFlag(FLAGS_tokens), 1, 1 << 20));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("hidden", absl::GetFlag(FLAGS_hidden), 1, 1 << 16));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("experts", experts, 1, 1 << 16));
  TANDEM_RETURN_IF_ERROR(cli::FlagRange("topk", absl::GetFlag(FLAGS_topk), 1, experts));
  std::vector<std::string> parts = absl::StrSplit(absl::GetFlag(FLAGS_bytes), ':');
  int64_t lo = 0, hi = 0;
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &lo) || lo < 4 || lo > (int64_t{1} << 34) ||
      (parts.size() > 1 && (!absl::SimpleAtoi(parts[1], &hi) || hi > (int64_t{1} << 34)))) {
    return absl::InvalidArgumentError(absl::StrFormat("--bytes: expected N or MIN:MAX in [4, 2^34], got '%s'",
                                                      json::Excerpt(absl::GetFlag(FLAGS_bytes), 40)));
  }
  hi = std::max(hi, lo);
  // Send and receive buffers of every rank (the collectives' largest: the
  // all-gather's receive holds ranks x bytes), or the MoE layer's rows.
  const bool moe = op == "dispatch" || op == "combine";
  const double bytes = moe ? 4.0 * n * absl::GetFlag(FLAGS_tokens) * absl::GetFlag(FLAGS_hidden) *
                                 (2.0 + 2.0 * absl::GetFlag(FLAGS_topk))
                           : static_cast<double>(n) * hi * (2.0 + n);
  TANDEM_RETURN_IF_ERROR(cli::CheckMemory(
      bytes, absl::GetFlag(FLAGS_max_memory_gb), 0.5,
      absl::StrFormat("buffers for --ranks %d and %s", n,
                      moe ? absl::StrFormat("--tokens %d x --hidden %d x --topk %d", absl::GetFlag(FLAGS_tokens),
                                            absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_topk))
                          : absl::StrFormat("--bytes up to %d", hi))));
  return std::make_pair(lo, hi);
}

absl::Status Main(int64_t lo, int64_t hi) {
  const std::string backend = absl::GetFlag(FLAGS_backend), op = absl::GetFlag(FLAGS_op);
  const int n = absl::GetFlag(FLAGS_ranks);
  Memory mem;
  std::vector<std::unique_ptr<Communicator>> owned;
  std::unique_ptr<MemoryStore> store;
  int world = n;
  if (backend == "local") {
    owned = CreateLocalGroup(n);
  } else if (backend == "store") {
    store = std::make_unique<MemoryStore>();
    for (int r = 0; r < n; ++r) owned.push_back(MakeStoreCommunicator(store.get(), r, n));
#ifdef TANDEM_WITH_CUDA
  } else if (backend == "cuda_local") {
    mem.device = true;
    TANDEM_ASSIGN_OR_RETURN(owned, CreateCudaLocalGroup(n));
  } else if (backend == "nccl") {
    mem.device = true;
    TANDEM_ASSIGN_OR_RETURN(static Bootstrap boot, BootstrapFromEnv(Deadline::In(absl::Minutes(2))));
    NcclOptions o;
    o.device = boot.info.local_rank;
    cudaSetDevice(o.device);
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> c,
                            CreateNcclCommunicator(boot.store.get(), boot.info.rank, boot.info.world_size, o));
    owned.push_back(std::move(c));
    world = boot.info.world_size;
#endif
  }
  std::vector<Communicator*> comms;
  for (auto& c : owned) comms.push_back(c.get());
  for (int64_t bytes = lo; bytes <= hi; bytes *= 2) {
    TANDEM_ASSIGN_OR_RETURN(Result r, Measure(comms, mem, op, bytes));
    std::vector<double> s = r.seconds;
    std::sort(s.begin(), s.end());
    const double avg = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
    const double p50 = s[s.size() / 2], worst = s.back();
    const bool moe = op == "dispatch" || op == "combine";
    const double size = moe ? r.logical_bytes : static_cast<double>(bytes);
    const double algbw = size / avg / 1e9, busbw = algbw * BusFactor(op, world);
    const double memcpy_gbps = MemcpyGBps(mem, std::max<int64_t>(static_cast<int64_t>(size), 4));
    const bool shared_device = backend == "cuda_local";
    const double device_gbps = (moe ? r.total_logical_bytes : static_cast<double>(bytes) * world) / avg / 1e9;
    json::Json row = {
        {"backend", backend},  {"op", op},
        {"ranks", world},      {"bytes", bytes},
        {"dtype", "f32"},      {"time_us", {{"avg", avg * 1e6}, {"p50", p50 * 1e6}, {"max", worst * 1e6}}},
        {"algbw_GBps", algbw}, {"busbw_GBps", busbw}};
    if (moe) row["logical_bytes"] = r.logical_bytes;
    if (shared_device) row["device_GBps"] = device_gbps;
    row["memcpy_GBps"] = memcpy_gbps;
    row["ratio_to_memcpy"] = (shared_device ? device_gbps : algbw) / memcpy_gbps;
    TANDEM_ASSIGN_OR_RETURN(std::string text, json::Dump(row));
    absl::PrintF("%s\n", text);
    std::fflush(stdout);
    if (moe) break;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tandem::comm

int main(int argc, char** argv) {
  // Keep freed buffers in the heap so iterations measure communication, not
  // the kernel zeroing fresh pages for every call's buffers.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  absl::SetProgramUsageMessage(
      "collective and MoE dispatch/combine bandwidth, nccl-tests metrics, one JSON line per size.\n"
      "Exit status: 0 done, 2 bad invocation, 1 a failure while running.");
  tandem::cli::ParseFlags(argc, argv);
  const absl::StatusOr<std::pair<int64_t, int64_t>> bytes = tandem::comm::CheckFlags();
  if (!bytes.ok()) {
    std::fprintf(stderr, "comm_bench: %s\n", std::string(bytes.status().message()).c_str());
    return tandem::cli::kBadInvocation;
  }
  if (absl::GetFlag(FLAGS_validate_only)) {
    std::printf("comm_bench: flags ok\n");
    return 0;
  }
  const absl::Status s = tandem::comm::Main(bytes->first, bytes->second);
  if (!s.ok()) {
    std::fprintf(stderr, "comm_bench: %s\n", std::string(s.message()).c_str());
    return tandem::cli::ExitCode(s);
  }
  return 0;
}
