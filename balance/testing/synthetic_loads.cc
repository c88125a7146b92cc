#include "balance/testing/synthetic_loads.h"

#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace tandem::balance::testing {

std::vector<int64_t> ZipfLoads(int num_layers, int num_experts, uint64_t seed, double s_min, double s_max) {
  Rng rng(seed);
  std::vector<int64_t> loads;
  loads.reserve(static_cast<size_t>(num_layers) * num_experts);
  std::vector<int> rank_of(num_experts);
  for (int l = 0; l < num_layers; ++l) {
    const double s = s_min + (s_max - s_min) * rng.Uniform();
    std::iota(rank_of.begin(), rank_of.end(), 0);
    for (int i = num_experts - 1; i > 0; --i) {
      std::swap(rank_of[i], rank_of[rng.Below(i + 1)]);
    }
    for (int e = 0; e < num_experts; ++e) {
      const double noise = 0.95 + 0.1 * rng.Uniform();
      loads.push_back(static_cast<int64_t>(std::llround(100000.0 / std::pow(rank_of[e] + 1.0, s) * noise)));
    }
  }
  return loads;
}

std::vector<int64_t> UniformLoads(int num_layers, int num_experts, uint64_t seed, int64_t max_load) {
  Rng rng(seed);
  std::vector<int64_t> loads(static_cast<size_t>(num_layers) * num_experts);
  for (int64_t& x : loads) {
    x = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(max_load) + 1));
  }
  return loads;
}

}  // namespace tandem::balance::testing
