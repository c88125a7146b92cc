// -----------------------------------------------------------------------------
// File: runfiles.h
// -----------------------------------------------------------------------------
//
// Files of a test's runfiles (its `data` dependencies and binaries), named by
// their path from the workspace root, e.g.
// "schedule/testdata/dualpipe_traces.txt". Under `bazel test` the path is
// resolved in $TEST_SRCDIR/$TEST_WORKSPACE; run by hand, relative to the
// current directory.
#ifndef TANDEM_BASE_TESTING_RUNFILES_H_
#define TANDEM_BASE_TESTING_RUNFILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::testing {

// RunfilePath()
//
// The file system path of `workspace_path` in the runfiles.
std::string RunfilePath(absl::string_view workspace_path);

// ReadRunfile()
//
// The bytes of `workspace_path`; kNotFound naming the path when it cannot be
// opened.
absl::StatusOr<std::string> ReadRunfile(absl::string_view workspace_path);

}  // namespace tandem::testing

#endif  // TANDEM_BASE_TESTING_RUNFILES_H_
