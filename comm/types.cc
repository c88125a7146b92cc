#include "comm/types.h"

#include <algorithm>
#include <cmath>

namespace tandem::comm {

absl::string_view DataTypeName(DataType t) {
  switch (t) {
    case DataType::kF32:
      return "f32";
    case DataType::kBF16:
      return "bf16";
    case DataType::kF16:
      return "f16";
    case DataType::kI32:
      return "i32";
    case DataType::kI64:
      return "i64";
    case DataType::kBytes:
      return "bytes";
  }
  return "?";
}

absl::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
    case ReduceOp::kAvg:
      return "avg";
  }
  return "?";
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while ((man & 0x400) == 0) {
        man <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  if (std::isnan(f)) return sign | 0x7e00;
  const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t man = bits & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;  // overflow to inf
  if (exp <= 0) {                       // subnormal or zero
    if (exp < -10) return sign;
    man |= 0x800000;
    const int shift = 14 - exp;
    uint32_t half = man >> shift;
    const uint32_t rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = (uint32_t(exp) << 10) | (man >> 13);
  const uint32_t rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // may carry into inf
  return sign | static_cast<uint16_t>(half);
}

namespace {

template <typename T>
T Apply(ReduceOp op, T a, T b) {
  switch (op) {
    case ReduceOp::kMax:
      return std::max(a, b);
    case ReduceOp::kMin:
      return std::min(a, b);
    default:
      return a + b;
  }
}

template <typename T>
void Reduce(ReduceOp op, T* acc, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = Apply(op, acc[i], x[i]);
}

template <float (*ToF)(uint16_t), uint16_t (*FromF)(float)>
void Reduce16(ReduceOp op, uint16_t* acc, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = FromF(Apply(op, ToF(acc[i]), ToF(x[i])));
}

}  // namespace

void ReduceInto(DataType t, ReduceOp op, void* acc, const void* x, int64_t n) {
  switch (t) {
    case DataType::kF32:
      return Reduce(op, static_cast<float*>(acc), static_cast<const float*>(x), n);
    case DataType::kI32:
      return Reduce(op, static_cast<int32_t*>(acc), static_cast<const int32_t*>(x), n);
    case DataType::kI64:
      return Reduce(op, static_cast<int64_t*>(acc), static_cast<const int64_t*>(x), n);
    case DataType::kBF16:
      return Reduce16<Bf16ToFloat, FloatToBf16>(op, static_cast<uint16_t*>(acc), static_cast<const uint16_t*>(x), n);
    case DataType::kF16:
      return Reduce16<F16ToFloat, FloatToF16>(op, static_cast<uint16_t*>(acc), static_cast<const uint16_t*>(x), n);
    case DataType::kBytes:
      return;
  }
}

void FinishAverage(DataType t, void* acc, int64_t n, int ranks) {
  switch (t) {
    case DataType::kF32:
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(acc)[i] /= ranks;
      return;
    case DataType::kI32:
      for (int64_t i = 0; i < n; ++i) static_cast<int32_t*>(acc)[i] /= ranks;
      return;
    case DataType::kI64:
      for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(acc)[i] /= ranks;
      return;
    case DataType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t& v = static_cast<uint16_t*>(acc)[i];
        v = FloatToBf16(Bf16ToFloat(v) / ranks);
      }
      return;
    case DataType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t& v = static_cast<uint16_t*>(acc)[i];
        v = FloatToF16(F16ToFloat(v) / ranks);
      }
      return;
    case DataType::kBytes:
      return;
  }
}

}  // namespace tandem::comm
