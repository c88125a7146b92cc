#include "tools/cli.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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

absl::Status FlagRange(absl::string_view flag, int64_t v, int64_t lo, int64_t hi, absl::string_view why) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat("--%s: expected %d..%d%s, got %d", flag, lo, hi, why, v));
}

absl::StatusOr<std::vector<double>> ParseSpeeds(absl::string_view flag, absl::string_view text, int count) {
  std::vector<double> speeds;
  if (text.empty()) return speeds;
  const std::string shown = text.size() > 80 ? absl::StrCat(text.substr(0, 80), "...") : std::string(text);
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(item, &v) || !(v > 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s: expected %d comma-separated finite speeds > 0, got '%s' (item %d is '%s')", flag,
                          count, shown, speeds.size(), item.substr(0, 40)));
    }
    speeds.push_back(v);
  }
  if (static_cast<int>(speeds.size()) != count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--%s: expected %d comma-separated finite speeds > 0, got '%s' (%d)", flag, count, shown, speeds.size()));
  }
  return speeds;
}

absl::Status CheckMemory(double bytes, double limit_gb, double fraction, absl::string_view sizes) {
  if (!(limit_gb >= 0) || !std::isfinite(limit_gb)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--max_memory_gb: expected a finite value >= 0, got %g", limit_gb));
  }
  constexpr double kGiB = 1 << 30;
  if (limit_gb == 0) limit_gb = fraction * static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) / kGiB;
  if (bytes / kGiB <= limit_gb) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("%s need about %.1f GiB, over --max_memory_gb = %.1f GiB", sizes, bytes / kGiB, limit_gb));
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
