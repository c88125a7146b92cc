// tandem's main job. Until the executor lands (see the README's roadmap) it
// reports which components this build contains and whether a GPU is usable.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(bool, verbose, false, "Also print how to run each component.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tandem end-to-end demo (placeholder)");
  absl::ParseCommandLine(argc, argv);
  std::printf("tandem: components for Mixture-of-Experts parallelism\n");
  std::printf("  base/      status macros, deadlines, CUDA checks\n");
  if (absl::GetFlag(FLAGS_verbose)) {
    std::printf("tests: bazel test //...\n");
  }
  return 0;
}
