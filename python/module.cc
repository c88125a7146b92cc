#include "pybind11/pybind11.h"
#include "python/bindings.h"

PYBIND11_MODULE(_tandem, m) {
  m.doc() = "tandem's C++ solvers and schedules; use the tandem package, not this module.";
  tandem::python::AddEplb(m);
  tandem::python::AddSchedule(m);
}
