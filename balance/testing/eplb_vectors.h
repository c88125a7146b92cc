// -----------------------------------------------------------------------------
// File: eplb_vectors.h
// -----------------------------------------------------------------------------
//
// Test support: loads balance/testdata/eplb_vectors.json (outputs of the
// EPLB reference, torch 1.13) from the test's runfiles and compares solver
// outputs with the expected arrays.

#ifndef TANDEM_BALANCE_TESTING_EPLB_VECTORS_H_
#define TANDEM_BALANCE_TESTING_EPLB_VECTORS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "balance/eplb_json.h"
#include "balance/placement.h"
#include "base/strict_json.h"

namespace tandem::balance::testing {

// The three output arrays of the reference, flat row-major.
struct ExpectedOutputs {
  std::vector<int64_t> phy2log;  // [layers][replicas]
  std::vector<int64_t> log2phy;  // [layers][experts][width]
  std::vector<int64_t> logcnt;   // [layers][experts]
  int width = 0;                 // log2phy's last dimension
};

struct VectorCase {
  std::string name;
  std::string policy;  // "hierarchical" or "global"
  json::Json inputs;   // the case's "inputs" object, as in the file
  Problem problem;
  ExpectedOutputs reference;  // the reference's outputs
  ExpectedOutputs stable;     // with stable sorts (= reference if !differs)
  bool stable_differs = false;
  json::Json metrics;  // the case's "metrics" object
};

struct InvalidCase {
  std::string name;
  Problem problem;
  bool reference_accepts = false;  // reference_result == "no error"
};

// LoadVectorCases(), LoadInvalidCases()
//
// Parse balance/testdata/eplb_vectors.json from the runfiles.
absl::StatusOr<std::vector<VectorCase>> LoadVectorCases();
absl::StatusOr<std::vector<InvalidCase>> LoadInvalidCases();

// ExpectedOutputsFromJson()
//
// Reads an {"phy2log", "log2phy", "logcnt"} object as nested arrays.
absl::StatusOr<ExpectedOutputs> ExpectedOutputsFromJson(const json::Json& v);

// CompareOutputs()
//
// The differences between `actual` and `expected`, as readable lines naming
// the array and the first differing index per array (at most one line per
// array, plus shape mismatches); empty when all three arrays match exactly.
std::vector<std::string> CompareOutputs(const Placement& actual, const ExpectedOutputs& expected);

}  // namespace tandem::balance::testing

#endif  // TANDEM_BALANCE_TESTING_EPLB_VECTORS_H_
