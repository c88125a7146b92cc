// -----------------------------------------------------------------------------
// File: bf16.h
// -----------------------------------------------------------------------------
//
// bfloat16 on the host: the upper 16 bits of an IEEE f32. FloatToBf16 rounds
// to nearest, ties to even, and keeps NaN a (quiet) NaN; Bf16ToFloat is
// exact. The GPU kernels round the same way (__float2bfloat16_rn).
#ifndef TANDEM_BASE_BF16_H_
#define TANDEM_BASE_BF16_H_

#include <cstdint>
#include <cstring>

namespace tandem {

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace tandem

#endif  // TANDEM_BASE_BF16_H_
