#include "tools/cli.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace tandem::cli {
namespace {

std::atomic<bool> parsing{false};
std::atomic<bool> usage{false};

// Abseil ends a refused command line with exit(1) after reporting it, and
// --help and its kin with exit(1) after printing: while parsing, those
// become a bad invocation and success.
void ExitFromParsing() {
  if (!parsing.load()) return;
  std::cout.flush();  // what Abseil printed
  std::cerr.flush();
  std::fflush(nullptr);
  _exit(usage.load() ? 0 : kBadInvocation);
}

bool IsUsageFlag(absl::string_view arg) {
  absl::ConsumePrefix(&arg, "-");
  absl::ConsumePrefix(&arg, "-");
  return absl::StartsWith(arg, "help") || arg == "version" || arg == "only_check_args";
}

}  // namespace

std::vector<char*> ParseFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--") break;
    if (IsUsageFlag(argv[i])) usage.store(true);
  }
  parsing.store(true);
  std::atexit(ExitFromParsing);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  parsing.store(false);
  return positional;
}

int ExitCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return kBadInvocation;
    default:
      return kFailure;
  }
}

}  // namespace tandem::cli
