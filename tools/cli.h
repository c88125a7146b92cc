// -----------------------------------------------------------------------------
// File: cli.h
// -----------------------------------------------------------------------------
//
// The command lines' shared contract: exit status 0 when done, 2 for a bad
// invocation or input (a message naming the flag or value, before any work),
// 1 for a failure while running. ParseFlags() parses with Abseil and keeps
// that contract for what Abseil refuses itself (an unknown flag, a value
// that is not a number), which it reports and would end with status 1.
#ifndef TANDEM_TOOLS_CLI_H_
#define TANDEM_TOOLS_CLI_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::cli {

inline constexpr int kBadInvocation = 2;
inline constexpr int kFailure = 1;

// ParseFlags()
//
// absl::ParseCommandLine(), exiting with kBadInvocation (not 1) when Abseil
// refuses the command line. Returns the positional arguments.
std::vector<char*> ParseFlags(int argc, char** argv);

// FlagRange()
//
// kInvalidArgument "--<flag>: expected lo..hi<why>, got v" unless
// lo <= v <= hi.
absl::Status FlagRange(absl::string_view flag, int64_t v, int64_t lo, int64_t hi, absl::string_view why = "");

// CheckMemory()
//
// kInvalidArgument "<sizes> need about X GiB, over --max_memory_gb = Y GiB"
// when `bytes` exceeds `limit_gb` (the --max_memory_gb flag: 0 means
// `fraction` of this machine's memory); also for a limit that is negative or
// not finite.
absl::Status CheckMemory(double bytes, double limit_gb, double fraction, absl::string_view sizes);

// ParseSpeeds()
//
// A comma-separated list of `count` relative speeds (finite, > 0), e.g.
// "1,1,0.5,1"; empty text gives an empty list. kInvalidArgument naming the
// flag and the bad item or count.
absl::StatusOr<std::vector<double>> ParseSpeeds(absl::string_view flag, absl::string_view text, int count);

// ExitCode()
//
// The status of a failed command: kBadInvocation for what the caller gave
// (kInvalidArgument, kNotFound, kOutOfRange, kFailedPrecondition), else
// kFailure.
int ExitCode(const absl::Status& s);

}  // namespace tandem::cli

#endif  // TANDEM_TOOLS_CLI_H_
