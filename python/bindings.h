// -----------------------------------------------------------------------------
// File: bindings.h
// -----------------------------------------------------------------------------
//
// The private extension module `tandem._tandem` (pybind11): the C++ entry
// points the pure-Python package (python/src/tandem) wraps. Every call that
// solves, generates or simulates releases the GIL while C++ runs. Errors keep
// the C++ message: kInvalidArgument and kOutOfRange raise ValueError,
// kNotFound KeyError, anything else RuntimeError.
#ifndef TANDEM_PYTHON_BINDINGS_H_
#define TANDEM_PYTHON_BINDINGS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pybind11/pybind11.h"

namespace tandem::python {

// Raises the Python exception for `status` (not OK) with its message.
[[noreturn]] void Raise(const absl::Status& status);

inline void RaiseIfError(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}

template <typename T>
T ValueOrRaise(absl::StatusOr<T> value) {
  if (!value.ok()) Raise(value.status());
  return *std::move(value);
}

// Runs `f` (returning absl::StatusOr<T>) without the GIL and returns its
// value, or raises with the GIL held again.
template <typename F>
auto WithoutGil(F&& f) {
  auto result = [&] {
    pybind11::gil_scoped_release release;
    return f();
  }();
  return ValueOrRaise(std::move(result));
}

void AddEplb(pybind11::module_& m);
void AddSchedule(pybind11::module_& m);

}  // namespace tandem::python

#endif  // TANDEM_PYTHON_BINDINGS_H_
