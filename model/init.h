// -----------------------------------------------------------------------------
// File: init.h
// -----------------------------------------------------------------------------
//
// Deterministic, placement-independent initialisation. Every parameter draws
// from its own SplitMix64 stream seeded by (model seed, parameter name), so a
// logical expert gets the same bits on whichever rank it lives, and the
// values are exact functions of the seed on every platform (integer
// arithmetic and one exact scaling; no libm).
//
// Example:
//   InitUniform(seed, param.name, 1.0f / std::sqrt(fan_in), param.value);
#ifndef TANDEM_MODEL_INIT_H_
#define TANDEM_MODEL_INIT_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "model/tensor.h"

namespace tandem::model {

// SplitMix64
//
// The SplitMix64 generator (Steele, Lea, Flood 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, 1): the top 24 bits times 2^-24 (exact in f32).
  float NextUnit();

 private:
  uint64_t state_;
};

// StreamSeed()
//
// SplitMix64 finaliser of (seed XOR FNV-1a-64(name)).
uint64_t StreamSeed(uint64_t seed, absl::string_view name);

// InitUniform()
//
// Fills a host f32 tensor with bound * (2u - 1), u = NextUnit() of the
// stream StreamSeed(seed, name), element by element in row-major order.
void InitUniform(uint64_t seed, absl::string_view name, float bound, const Tensor& t);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_INIT_H_
