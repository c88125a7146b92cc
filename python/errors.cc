#include <string>

#include "absl/status/status.h"
#include "pybind11/pybind11.h"
#include "python/bindings.h"

namespace tandem::python {

void Raise(const absl::Status& status) {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      throw pybind11::value_error(message);
    case absl::StatusCode::kNotFound:
      throw pybind11::key_error(message);
    default:
      throw std::runtime_error(message);  // pybind11 raises RuntimeError
  }
}

}  // namespace tandem::python
