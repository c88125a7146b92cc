// GPU dispatch, cached dispatch and combine on cuda_local equal the host
// versions on local, bit for bit (rows, metadata, combined output), for f32,
// bf16 and FP8.
#include "comm/moe/dispatch_gpu.h"

#include <cuda_runtime.h>

#include <cstring>
#include <random>
#include <thread>

#include "base/cuda_check.h"
#include "base/testing/status_matchers.h"
#include "comm/cuda_local/cuda_local_communicator.h"
#include "comm/local/local_communicator.h"
#include "gtest/gtest.h"

namespace tandem::comm::moe {
namespace {

TEST(DispatchGpuTest, EqualsTheHostVersionBitForBit) {
  if (VisibleGpuCount() == 0) GTEST_SKIP() << "no GPU visible";
  const int ranks = 4, experts = 16, k = 4, hidden = 300, tokens = 64;
  for (DataType t : {DataType::kF32, DataType::kBF16}) {
    for (bool fp8 : {false, true}) {
      std::vector<std::vector<int64_t>> idx(ranks);
      std::vector<std::vector<float>> w(ranks);
      std::vector<std::vector<char>> x(ranks);
      std::mt19937 rng(42);
      std::normal_distribution<float> normal;
      for (int r = 0; r < ranks; ++r) {
        for (int i = 0; i < tokens * k; ++i) {
          idx[r].push_back(rng() % 5 == 0 ? -1 : static_cast<int64_t>(rng() % experts));
          w[r].push_back(normal(rng));
        }
        x[r].resize(int64_t{tokens} * hidden * SizeOf(t));
        for (int64_t i = 0; i < int64_t{tokens} * hidden; ++i) {
          const float v = normal(rng);
          if (t == DataType::kF32) {
            std::memcpy(x[r].data() + 4 * i, &v, 4);
          } else {
            const uint16_t h = FloatToBf16(v);
            std::memcpy(x[r].data() + 2 * i, &h, 2);
          }
        }
      }
      DispatchOptions o;
      o.fp8 = fp8;
      auto host = CreateLocalGroup(ranks);
      ASSERT_OK_AND_ASSIGN(auto gpu, CreateCudaLocalGroup(ranks));
      std::vector<std::vector<char>> host_rows(ranks), host_out(ranks), gpu_rows(ranks), gpu_out(ranks);
      std::vector<std::vector<char>> host_again(ranks), gpu_again(ranks);
      std::vector<absl::Status> st(ranks);
      std::vector<std::thread> threads;
      for (int r = 0; r < ranks; ++r) {
        threads.emplace_back([&, r] {
          cudaSetDevice(0);
          const Routing routing{tokens, k, experts, idx[r], w[r]};
          const Deadline d = Deadline::In(absl::Seconds(60));
          absl::StatusOr<Dispatched> hd = Dispatch(*host[r], x[r].data(), t, hidden, routing, o, d);
          if (!hd.ok()) return void(st[r] = hd.status());
          host_rows[r] = hd->x;
          absl::StatusOr<std::vector<char>> hc = Combine(*host[r], hd->handle, hd->x.data(), t, d);
          if (!hc.ok()) return void(st[r] = hc.status());
          host_out[r] = *hc;
          absl::StatusOr<std::vector<char>> ha = DispatchCached(*host[r], hd->handle, x[r].data(), t, d);
          if (!ha.ok()) return void(st[r] = ha.status());
          host_again[r] = *ha;
          absl::StatusOr<DeviceBuffer> xd = AllocDevice(x[r].size());
          if (!xd.ok()) return void(st[r] = xd.status());
          cudaMemcpy(xd->get(), x[r].data(), x[r].size(), cudaMemcpyHostToDevice);
          cudaStream_t s = CudaLocalStream(*gpu[r]);
          absl::StatusOr<DispatchedGpu> gd = DispatchGpu(*gpu[r], xd->get(), t, hidden, routing, o, s, d);
          if (!gd.ok()) return void(st[r] = gd.status());
          gpu_rows[r].resize(gd->x.bytes);
          cudaMemcpy(gpu_rows[r].data(), gd->x.get(), gd->x.bytes, cudaMemcpyDeviceToHost);
          if (gd->local_expert != hd->local_expert || gd->source != hd->source ||
              gd->tokens_per_expert != hd->tokens_per_expert) {
            return void(st[r] = absl::InternalError("metadata differs"));
          }
          absl::StatusOr<DeviceBuffer> gc = CombineGpu(*gpu[r], gd->handle, gd->x.get(), t, s, d);
          if (!gc.ok()) return void(st[r] = gc.status());
          gpu_out[r].resize(gc->bytes);
          cudaMemcpy(gpu_out[r].data(), gc->get(), gc->bytes, cudaMemcpyDeviceToHost);
          absl::StatusOr<DeviceBuffer> ga = DispatchCachedGpu(*gpu[r], gd->handle, xd->get(), t, s, d);
          if (!ga.ok()) return void(st[r] = ga.status());
          gpu_again[r].resize(ga->bytes);
          cudaMemcpy(gpu_again[r].data(), ga->get(), ga->bytes, cudaMemcpyDeviceToHost);
        });
      }
      for (auto& th : threads) th.join();
      for (int r = 0; r < ranks; ++r) {
        ASSERT_OK(st[r]);
        EXPECT_EQ(gpu_rows[r], host_rows[r]) << "rows on rank " << r << " fp8=" << fp8;
        EXPECT_EQ(gpu_out[r], host_out[r]) << "combine on rank " << r << " fp8=" << fp8;
        EXPECT_EQ(gpu_again[r], host_again[r]) << "cached dispatch on rank " << r << " fp8=" << fp8;
      }
    }
  }
}

}  // namespace
}  // namespace tandem::comm::moe
