// -----------------------------------------------------------------------------
// File: synthetic_loads.h
// -----------------------------------------------------------------------------
//
// Test and benchmark support: deterministic synthetic expert loads.

#ifndef TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_
#define TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_

#include <cstdint>
#include <vector>

namespace tandem::balance::testing {

// ZipfLoads()
//
// [num_layers x num_experts] int64 token counts, skewed like real MoE
// traffic: per layer, a Zipf exponent s drawn from [s_min, s_max], the
// expert of rank r gets round(100000 / (r + 1)^s * noise) tokens (noise
// within +-5 %), and ranks are shuffled over expert ids. Same seed, same
// loads.
std::vector<int64_t> ZipfLoads(int num_layers, int num_experts, uint64_t seed,
                               double s_min = 0.8, double s_max = 1.4);

// UniformLoads()
//
// [num_layers x num_experts] int64 loads drawn uniformly from [0, max_load].
std::vector<int64_t> UniformLoads(int num_layers, int num_experts,
                                  uint64_t seed, int64_t max_load);

}  // namespace tandem::balance::testing

#endif  // TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_
