#include "balance/testing/eplb_vectors.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/testing/runfiles.h"

namespace tandem::balance::testing {
namespace {

absl::StatusOr<json::Json> LoadVectorsFile() {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ::tandem::testing::ReadRunfile("balance/testdata/eplb_vectors.json"));
  return json::Parse(text);
}

// The member `key` of object `v`, or kInvalidArgument naming it.
absl::StatusOr<const json::Json*> Get(const json::Json& v, const char* key) {
  if (!v.is_object() || !v.contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat("eplb_vectors.json: expected a member \"", key, "\""));
  }
  return &v[key];
}

// Reads a [layers][experts][width] array of integers.
absl::Status ReadLog2Phy(const json::Json& v, ExpectedOutputs* out) {
  out->width = -1;
  for (const json::Json& layer : v) {
    for (const json::Json& expert : layer) {
      const int width = static_cast<int>(expert.size());
      if (out->width >= 0 && width != out->width) {
        return absl::InvalidArgumentError("log2phy: ragged last dimension");
      }
      out->width = width;
      for (const json::Json& slot : expert) {
        if (!slot.is_number_integer()) {
          return absl::InvalidArgumentError("log2phy: expected integers");
        }
        out->log2phy.push_back(slot.get<int64_t>());
      }
    }
  }
  return absl::OkStatus();
}

// The first index where `a` and `b` differ, or -1.
int64_t FirstDifference(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(std::min(a.size(), b.size()));
}

void Compare(const char* name, const std::vector<int64_t>& actual, const std::vector<int64_t>& expected,
             std::vector<std::string>* out) {
  if (actual.size() != expected.size()) {
    out->push_back(absl::StrCat(name, ": expected ", expected.size(), " entries, got ", actual.size()));
    return;
  }
  const int64_t i = FirstDifference(actual, expected);
  if (i < 0) return;
  int64_t differing = 0;
  for (size_t j = 0; j < actual.size(); ++j) differing += actual[j] != expected[j];
  out->push_back(absl::StrCat(name, " (flat index ", i, "): expected ", expected[i], ", got ", actual[i], " (",
                              differing, " entries differ)"));
}

}  // namespace

absl::StatusOr<ExpectedOutputs> ExpectedOutputsFromJson(const json::Json& v) {
  ExpectedOutputs out;
  int rows, cols;
  if (!v.contains("phy2log") || !v.contains("log2phy") || !v.contains("logcnt")) {
    return absl::InvalidArgumentError(
        "outputs: expected phy2log, log2phy "
        "and logcnt");
  }
  TANDEM_ASSIGN_OR_RETURN(out.phy2log, IntMatrixFromJson(v["phy2log"], "phy2log", &rows, &cols));
  TANDEM_ASSIGN_OR_RETURN(out.logcnt, IntMatrixFromJson(v["logcnt"], "logcnt", &rows, &cols));
  TANDEM_RETURN_IF_ERROR(ReadLog2Phy(v["log2phy"], &out));
  return out;
}

absl::StatusOr<std::vector<VectorCase>> LoadVectorCases() {
  TANDEM_ASSIGN_OR_RETURN(json::Json doc, LoadVectorsFile());
  TANDEM_ASSIGN_OR_RETURN(const json::Json* list, Get(doc, "cases"));
  std::vector<VectorCase> cases;
  for (const json::Json& c : *list) {
    VectorCase vc;
    const json::Json *name, *policy, *inputs, *outputs, *stable, *differs;
    TANDEM_ASSIGN_OR_RETURN(name, Get(c, "name"));
    TANDEM_ASSIGN_OR_RETURN(policy, Get(c, "policy"));
    TANDEM_ASSIGN_OR_RETURN(inputs, Get(c, "inputs"));
    TANDEM_ASSIGN_OR_RETURN(outputs, Get(c, "outputs"));
    TANDEM_ASSIGN_OR_RETURN(stable, Get(c, "stable_sort_variant"));
    TANDEM_ASSIGN_OR_RETURN(differs, Get(*stable, "differs"));
    vc.name = name->get<std::string>();
    vc.policy = policy->get<std::string>();
    vc.inputs = *inputs;
    TANDEM_ASSIGN_OR_RETURN(vc.problem, ProblemFromJson(vc.inputs));
    TANDEM_ASSIGN_OR_RETURN(vc.reference, ExpectedOutputsFromJson(*outputs));
    vc.stable_differs = differs->get<bool>();
    vc.stable = vc.reference;
    if (vc.stable_differs) {
      TANDEM_ASSIGN_OR_RETURN(const json::Json* variant, Get(*stable, "outputs"));
      TANDEM_ASSIGN_OR_RETURN(vc.stable, ExpectedOutputsFromJson(*variant));
    }
    if (c.contains("metrics")) vc.metrics = c["metrics"];
    cases.push_back(std::move(vc));
  }
  return cases;
}

absl::StatusOr<std::vector<InvalidCase>> LoadInvalidCases() {
  TANDEM_ASSIGN_OR_RETURN(json::Json doc, LoadVectorsFile());
  TANDEM_ASSIGN_OR_RETURN(const json::Json* list, Get(doc, "invalid_cases"));
  std::vector<InvalidCase> cases;
  for (const json::Json& c : *list) {
    InvalidCase ic;
    const json::Json *name, *inputs, *result;
    TANDEM_ASSIGN_OR_RETURN(name, Get(c, "name"));
    TANDEM_ASSIGN_OR_RETURN(inputs, Get(c, "inputs"));
    TANDEM_ASSIGN_OR_RETURN(result, Get(c, "reference_result"));
    ic.name = name->get<std::string>();
    TANDEM_ASSIGN_OR_RETURN(ic.problem, ProblemFromJson(*inputs));
    ic.reference_accepts = *result == "no error";
    cases.push_back(std::move(ic));
  }
  return cases;
}

std::vector<std::string> CompareOutputs(const Placement& actual, const ExpectedOutputs& expected) {
  std::vector<std::string> out;
  if (actual.max_count != expected.width) {
    out.push_back(absl::StrCat("log2phy width: expected ", expected.width, ", got ", actual.max_count));
  }
  Compare("phy2log", actual.phy2log, expected.phy2log, &out);
  Compare("log2phy", actual.log2phy, expected.log2phy, &out);
  Compare("logcnt", actual.logcnt, expected.logcnt, &out);
  return out;
}

}  // namespace tandem::balance::testing
