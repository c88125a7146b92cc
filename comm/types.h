// -----------------------------------------------------------------------------
// File: types.h
// -----------------------------------------------------------------------------
//
// Element types and reduction operators of the communication layer. Raw
// bytes (kBytes) carry opaque payloads such as FP8 tokens; they can be moved
// but not reduced.

#ifndef TANDEM_COMM_TYPES_H_
#define TANDEM_COMM_TYPES_H_

#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"
#include "base/bf16.h"

namespace tandem::comm {

enum class DataType : uint8_t { kF32, kBF16, kF16, kI32, kI64, kBytes };
enum class ReduceOp : uint8_t { kSum, kMax, kMin, kAvg };

inline int64_t SizeOf(DataType t) {
  switch (t) {
    case DataType::kF32:
    case DataType::kI32:
      return 4;
    case DataType::kBF16:
    case DataType::kF16:
      return 2;
    case DataType::kI64:
      return 8;
    case DataType::kBytes:
      return 1;
  }
  return 1;
}

absl::string_view DataTypeName(DataType t);
absl::string_view ReduceOpName(ReduceOp op);

// Float conversions for f16 (round to nearest even; NaN kept); bf16's are
// base/bf16.h's.
float F16ToFloat(uint16_t h);
uint16_t FloatToF16(float f);

// ReduceInto()
//
// acc[i] = op(acc[i], x[i]) for n elements of type t, computed in float for
// the 16-bit types and rounded back; kAvg accumulates like kSum (the caller
// divides once at the end with FinishAverage). t must not be kBytes.
void ReduceInto(DataType t, ReduceOp op, void* acc, const void* x, int64_t n);

// Divides n elements by `ranks` (kAvg's last step).
void FinishAverage(DataType t, void* acc, int64_t n, int ranks);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_TYPES_H_
