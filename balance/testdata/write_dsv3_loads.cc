// Writes dsv3_58_layers.csv: synthetic DeepSeek-V3-shaped expert loads, 58
// MoE layers x 256 experts, from testing::ZipfLoads(58, 256, seed 2024) (the
// loads eplb_benchmark solves), one CSV row per layer.
//
// Usage: bazel run //balance:write_dsv3_loads > balance/testdata/dsv3_58_layers.csv
#include <cstdint>
#include <cstdio>
#include <vector>

#include "balance/testing/synthetic_loads.h"

int main() {
  constexpr int kLayers = 58, kExperts = 256;
  const std::vector<int64_t> loads = tandem::balance::testing::ZipfLoads(kLayers, kExperts, 2024);
  std::printf(
      "# DeepSeek-V3 shape: %d layers x %d experts, Zipf-like token counts "
      "(written by //balance:write_dsv3_loads: ZipfLoads seed 2024)\n",
      kLayers, kExperts);
  for (int l = 0; l < kLayers; ++l) {
    for (int e = 0; e < kExperts; ++e) {
      std::printf("%s%lld", e ? "," : "", static_cast<long long>(loads[static_cast<size_t>(l) * kExperts + e]));
    }
    std::printf("\n");
  }
  return 0;
}
