// -----------------------------------------------------------------------------
// File: fnv.h
// -----------------------------------------------------------------------------
//
// Fnv1a64(): FNV-1a, 64 bits, over raw bytes, chainable (pass the previous
// result as `h`). For fingerprints that compare runs bit for bit; not a
// cryptographic hash.
#ifndef TANDEM_BASE_FNV_H_
#define TANDEM_BASE_FNV_H_

#include <cstddef>
#include <cstdint>

namespace tandem {

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;

inline uint64_t Fnv1a64(const void* data, size_t bytes, uint64_t h = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

}  // namespace tandem

#endif  // TANDEM_BASE_FNV_H_
