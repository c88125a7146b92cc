#include "base/testing/runfiles.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tandem::testing {

std::string RunfilePath(absl::string_view workspace_path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return std::string(workspace_path);
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir, "/", workspace == nullptr ? "tandem" : workspace, "/", workspace_path);
}

absl::StatusOr<std::string> ReadRunfile(absl::string_view workspace_path) {
  const std::string path = RunfilePath(workspace_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

}  // namespace tandem::testing
