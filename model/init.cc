#include "model/init.h"

namespace tandem::model {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

float SplitMix64::NextUnit() { return static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f); }

uint64_t StreamSeed(uint64_t seed, absl::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  SplitMix64 mix(seed ^ h);
  return mix.Next();
}

void InitUniform(uint64_t seed, absl::string_view name, float bound, const Tensor& t) {
  SplitMix64 rng(StreamSeed(seed, name));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    p[i] = bound * (2.0f * rng.NextUnit() - 1.0f);
  }
}

}  // namespace tandem::model
