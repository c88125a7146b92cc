// Fuzz-style test: random byte-level mutations (flip, insert, delete,
// duplicate a span, truncate) of valid files in every format. Parsers must
// not crash or hang; whatever they accept, the validator can judge.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "schedule/formats/proto_io.h"
#include "schedule/formats/torch_csv.h"
#include "schedule/formats/trace.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/validator.h"

namespace tandem::schedule {
namespace {

std::string Mutate(std::string s, std::mt19937& rng) {
  static const std::string kAlphabet = "0123456789FBIWSR.@[],:;()#=_ \nabcdefghijklmnopqrstuvwxyz\"{}-";
  const int edits = 1 + rng() % 4;
  for (int e = 0; e < edits; ++e) {
    const size_t at = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 6) {
      case 0:
        if (!s.empty()) s[at] = kAlphabet[rng() % kAlphabet.size()];
        break;
      case 1:
        s.insert(s.begin() + at, kAlphabet[rng() % kAlphabet.size()]);
        break;
      case 2:
        if (!s.empty()) s.erase(at, 1 + rng() % 8);
        break;
      case 3: {
        const size_t len = 1 + rng() % 16;
        s.insert(at, s.substr(at, len));
        break;
      }
      case 4:
        s.resize(at);
        break;
      default:
        if (!s.empty()) s[at] = static_cast<char>(rng() % 256);
    }
  }
  return s;
}

TEST(FormatsFuzzTest, MutatedFilesNeverCrash) {
  std::vector<Schedule> seeds;
  for (Kind kind : {Kind::kDualPipe, Kind::kDualPipeV, Kind::kZBV, Kind::kInterleaved1F1B, Kind::k1F1B}) {
    absl::StatusOr<Schedule> s = Generate({kind, 2, 4});
    ASSERT_TRUE(s.ok());
    seeds.push_back(*s);
    seeds.push_back(*Lower(*s));
  }
  std::mt19937 rng(20261122);
  int parsed = 0, rejected = 0;
  for (const Schedule& seed : seeds) {
    const std::string trace =
        absl::StrCat("# kind=", KindName(seed.kind), " ranks=2 microbatches=4\n", FormatTrace(seed));
    const absl::StatusOr<std::string> csv = FormatTorchCsv(seed);
    const std::string bin = FormatBinaryProto(seed), text = FormatTextProto(seed), json = FormatJson(seed);
    for (int i = 0; i < 300; ++i) {
      std::vector<absl::StatusOr<Schedule>> results;
      results.push_back(ParseTrace(Mutate(trace, rng)));
      if (csv.ok()) results.push_back(ParseTorchCsv(Mutate(*csv, rng)));
      results.push_back(ParseBinaryProto(Mutate(bin, rng)));
      results.push_back(ParseTextProto(Mutate(text, rng)));
      results.push_back(ParseJson(Mutate(json, rng)));
      for (const absl::StatusOr<Schedule>& r : results) {
        if (!r.ok()) {
          ++rejected;
          EXPECT_FALSE(r.status().message().empty());
          continue;
        }
        ++parsed;
        (void)Validate(*r);  // must not crash either
      }
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(parsed, 10);
}

}  // namespace
}  // namespace tandem::schedule
