// The nccl backend on one GPU: the conformance suite at world size 1, and the
// duplicate-GPU check (two ranks on GPU 0 get our error before NCCL init).
#include "comm/nccl/nccl_communicator.h"

#include <cuda_runtime.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "comm/testing/conformance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

Backend NcclBackend() {
  Backend b;
  b.name = "nccl";
  b.make_group = [](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
    auto store = std::make_shared<MemoryStore>();
    std::vector<std::unique_ptr<Communicator>> out;
    // One rank per GPU of this host.
    for (int r = 0; r < n; ++r) {
      NcclOptions o;
      o.device = r;
      absl::StatusOr<std::unique_ptr<Communicator>> c = CreateNcclCommunicator(store.get(), r, n, o);
      if (!c.ok()) return c.status();
      out.push_back(*std::move(c));
    }
    static std::vector<std::shared_ptr<MemoryStore>> keep;  // stores outlive their communicators
    keep.push_back(store);
    return out;
  };
  b.alloc = [](int rank, int64_t bytes) -> void* {
    cudaSetDevice(rank);
    void* p = nullptr;
    cudaMalloc(&p, std::max<int64_t>(bytes, 1));
    return p;
  };
  b.free = [](int rank, void* p) {
    cudaSetDevice(rank);
    cudaFree(p);
  };
  b.upload = [](int rank, void* dst, const void* host, int64_t bytes) {
    cudaSetDevice(rank);
    cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice);
  };
  b.download = [](int rank, void* host, const void* src, int64_t bytes) {
    cudaSetDevice(rank);
    cudaDeviceSynchronize();
    cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost);
  };
  b.unavailable = [] { return VisibleGpuCount() == 0 ? std::string("no GPU visible") : std::string(); };
  return b;
}

// World size 1 always; more ranks only where the host has that many GPUs
// (a multi-rank NCCL group needs one process or thread per GPU).
INSTANTIATE_TEST_SUITE_P(Nccl, ConformanceTest,
                         ::testing::Combine(::testing::Values(NcclBackend()), ::testing::Values(1)),
                         [](const ::testing::TestParamInfo<ConformanceTest::ParamType>& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param), "ranks");
                         });

TEST(NcclTest, TwoRanksOnOneGpuGetOurError) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  MemoryStore store;
  std::vector<absl::Status> status(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      NcclOptions o;
      o.device = 0;
      status[r] = CreateNcclCommunicator(&store, r, 2, o).status();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : status) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ranks 0 and 1 are both on GPU")));
  }
}

TEST(NcclTest, RuntimeVersionIsReported) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  std::printf("nccl runtime version %d\n", NcclRuntimeVersion());
  EXPECT_GE(NcclRuntimeVersion(), 21800);
}

}  // namespace
}  // namespace tandem::comm::testing
