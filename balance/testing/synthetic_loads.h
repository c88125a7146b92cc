// -----------------------------------------------------------------------------
// File: synthetic_loads.h
// -----------------------------------------------------------------------------
//
// Test and benchmark support: deterministic synthetic expert loads.

#ifndef TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_
#define TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace tandem::balance::testing {

// Rng
//
// splitmix64: a tiny generator whose output is the same everywhere (the
// standard library's distributions are not portable across versions).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n); n > 0.
  uint64_t Below(uint64_t n) { return Next() % n; }
  // One of `choices`, uniformly.
  template <typename T>
  T Pick(std::initializer_list<T> choices) {
    return choices.begin()[Below(choices.size())];
  }

 private:
  uint64_t state_;
};

// ZipfLoads()
//
// [num_layers x num_experts] int64 token counts, skewed like real MoE
// traffic: per layer, a Zipf exponent s drawn from [s_min, s_max], the
// expert of rank r gets round(100000 / (r + 1)^s * noise) tokens (noise
// within +-5 %), and ranks are shuffled over expert ids. Same seed, same
// loads.
std::vector<int64_t> ZipfLoads(int num_layers, int num_experts, uint64_t seed, double s_min = 0.8, double s_max = 1.4);

// UniformLoads()
//
// [num_layers x num_experts] int64 loads drawn uniformly from [0, max_load].
std::vector<int64_t> UniformLoads(int num_layers, int num_experts, uint64_t seed, int64_t max_load);

}  // namespace tandem::balance::testing

#endif  // TANDEM_BALANCE_TESTING_SYNTHETIC_LOADS_H_
