// -----------------------------------------------------------------------------
// File: testdata.h
// -----------------------------------------------------------------------------
//
// Reads a file from the test's runfiles (a `data` dependency), given its path
// from the workspace root, e.g. "schedule/testdata/dualpipe_traces.txt".

#ifndef TANDEM_SCHEDULE_TESTING_TESTDATA_H_
#define TANDEM_SCHEDULE_TESTING_TESTDATA_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::schedule::testing {

absl::StatusOr<std::string> ReadTestData(absl::string_view workspace_path);

}  // namespace tandem::schedule::testing

#endif  // TANDEM_SCHEDULE_TESTING_TESTDATA_H_
