#include "schedule/testing/testdata.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tandem::schedule::testing {

absl::StatusOr<std::string> ReadTestData(absl::string_view workspace_path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const std::string path =
      srcdir != nullptr
          ? absl::StrCat(srcdir, "/", workspace ? workspace : "tandem", "/",
                         workspace_path)
          : std::string(workspace_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

}  // namespace tandem::schedule::testing
