#include "comm/cuda_local/cuda_local_communicator.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "base/cuda_check.h"
#include "comm/testing/conformance.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {
namespace {

Backend CudaLocalBackend() {
  Backend b;
  b.name = "cuda_local";
  b.make_group = [](int n) { return CreateCudaLocalGroup(n); };
  b.alloc = [](int, int64_t bytes) -> void* {
    void* p = nullptr;
    cudaMalloc(&p, std::max<int64_t>(bytes, 1));
    return p;
  };
  b.free = [](int, void* p) { cudaFree(p); };
  b.upload = [](int, void* dst, const void* host, int64_t bytes) {
    cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice);
  };
  b.download = [](int, void* host, const void* src, int64_t bytes) {
    cudaDeviceSynchronize();
    cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost);
  };
  b.unavailable = [] { return VisibleGpuCount() == 0 ? std::string("no GPU visible") : std::string(); };
  return b;
}

INSTANTIATE_TEST_SUITE_P(CudaLocal, ConformanceTest,
                         ::testing::Combine(::testing::Values(CudaLocalBackend()), ::testing::Values(1, 2, 3, 4, 8)),
                         [](const ::testing::TestParamInfo<ConformanceTest::ParamType>& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param), "ranks");
                         });

}  // namespace
}  // namespace tandem::comm::testing
