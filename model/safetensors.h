// -----------------------------------------------------------------------------
// File: safetensors.h
// -----------------------------------------------------------------------------
//
// The safetensors file format (what PyTorch / Hugging Face load with
// safetensors.torch.load_file): 8 bytes little-endian u64 N, an N-byte JSON
// header {"__metadata__": {str: str}, "<name>": {"dtype": "F32",
// "shape": [..], "data_offsets": [begin, end]}, ...} padded with spaces to a
// multiple of 8, then the raw little-endian tensor bytes; offsets are
// relative to the data section, which the tensors tile exactly (no holes,
// no overlap). F32 and BF16 tensors are supported.
//
// Writes are atomic: a temporary file in the same directory, flushed, then
// renamed over the destination. The parser never crashes on hostile input
// (fuzzed in safetensors_test) and names what is wrong.
//
// Example:
//   TANDEM_RETURN_IF_ERROR(WriteSafetensors(path, {{"w", w}}, {{"k", "v"}}));
//   TANDEM_ASSIGN_OR_RETURN(SafetensorsFile f, ReadSafetensors(path));
//   const Tensor* w2 = f.Find("w");
#ifndef TANDEM_MODEL_SAFETENSORS_H_
#define TANDEM_MODEL_SAFETENSORS_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor.h"

namespace tandem::model {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // file order
  std::map<std::string, std::string> metadata;
  // The tensor named `name`, or nullptr.
  const Tensor* Find(absl::string_view name) const;
};

// SerializeSafetensors()
//
// The file bytes. kInvalidArgument for an empty or duplicate name, the
// reserved name "__metadata__", or a device tensor.
absl::StatusOr<std::string> SerializeSafetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                 const std::map<std::string, std::string>& metadata);

// ParseSafetensors()
//
// kDataLoss "safetensors: <what>: expected X, got Y" for a truncated or
// corrupt file (bad length, bad JSON, unknown dtype, offsets that do not
// match the shape or do not tile the data section).
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes);

// WriteSafetensors(), ReadSafetensors()
//
// File I/O around the above; I/O failures are kUnavailable or kNotFound
// naming the path.
absl::Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata);
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_SAFETENSORS_H_
