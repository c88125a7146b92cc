// Parity with the references: every case of DeepSeek's DualPipe/DualPipeV
// traces (compute-only and with comm batches, byte for byte) and of PyTorch
// 2.11's pipeline_order (compute actions per rank, idle steps ignored).
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/testing/runfiles.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "schedule/formats/torch_csv.h"
#include "schedule/formats/trace.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

struct TraceCase {
  std::string header;  // "dualpipe ranks=4 N=8 : compute-only"
  Kind kind;
  int ranks = 0;
  int microbatches = 0;
  enum { kCompute, kComm, kRejected } form;
  std::string expected;  // rank lines, each ending in '\n'
};

std::vector<TraceCase> LoadTraceCases() {
  absl::StatusOr<std::string> text = ::tandem::testing::ReadRunfile("schedule/testdata/dualpipe_traces.txt");
  EXPECT_OK(text);
  std::vector<TraceCase> cases;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "== ")) {
      TraceCase c;
      c.header = std::string(line);
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      c.kind = *ParseKind(words[0]);
      EXPECT_TRUE(absl::SimpleAtoi(absl::StripPrefix(words[1], "ranks="), &c.ranks));
      EXPECT_TRUE(absl::SimpleAtoi(absl::StripPrefix(words[2], "N="), &c.microbatches));
      c.form = absl::StrContains(line, "REJECTED")    ? TraceCase::kRejected
               : absl::StrContains(line, "with comm") ? TraceCase::kComm
                                                      : TraceCase::kCompute;
      cases.push_back(c);
    } else if (absl::StartsWith(line, "r") && !cases.empty()) {
      absl::StrAppend(&cases.back().expected, line, "\n");
    }
  }
  return cases;
}

TEST(DualPipeParityTest, EveryTraceMatchesByteForByte) {
  const std::vector<TraceCase> cases = LoadTraceCases();
  // dualpipe: 3 rank counts x (2 valid N x 2 forms + 1 rejected odd N);
  // dualpipev: 3 rank counts x 3 N x 2 forms.
  ASSERT_EQ(cases.size(), 33);
  int matched = 0;
  for (const TraceCase& c : cases) {
    SCOPED_TRACE(c.header);
    absl::StatusOr<Schedule> s = Generate({c.kind, c.ranks, c.microbatches});
    if (c.form == TraceCase::kRejected) {
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("microbatches: expected an even number")));
      ++matched;
      continue;
    }
    ASSERT_OK(s);
    if (c.form == TraceCase::kComm) {
      ASSERT_OK_AND_ASSIGN(*s, Lower(*s));
    }
    EXPECT_EQ(FormatTrace(*s), c.expected);
    matched += FormatTrace(*s) == c.expected;
    // Importing the reference's text gives back the same schedule.
    ASSERT_OK_AND_ASSIGN(Schedule parsed, ParseTrace(c.expected, {c.kind, c.ranks, c.microbatches}));
    EXPECT_EQ(FormatTrace(parsed), c.expected);
    EXPECT_EQ(parsed.lowered, c.form == TraceCase::kComm);
  }
  EXPECT_EQ(matched, cases.size());
}

// Must-fail twin: one changed token in the expectation is noticed.
TEST(DualPipeParityTest, CorruptedTraceDoesNotMatch) {
  const std::vector<TraceCase> cases = LoadTraceCases();
  const TraceCase& c = cases[0];
  std::string corrupted = c.expected;
  const size_t at = corrupted.find("B1.0");
  ASSERT_NE(at, std::string::npos);
  corrupted.replace(at, 4, "I1.0");
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({c.kind, c.ranks, c.microbatches}));
  EXPECT_NE(FormatTrace(s), corrupted);
}

struct TorchCase {
  std::string key;
  GenerateOptions options;
  std::vector<std::vector<std::string>> ranks;  // idle steps removed
};

std::vector<TorchCase> LoadTorchCases() {
  absl::StatusOr<std::string> text = ::tandem::testing::ReadRunfile("schedule/testdata/torch_pipelining_orders.json");
  EXPECT_OK(text);
  google::protobuf::Struct root;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(*text, &root).ok());
  const std::vector<std::pair<std::string, Kind>> names = {{"Interleaved1F1B", Kind::kInterleaved1F1B},
                                                           {"LoopedBFS", Kind::kLoopedBFS},
                                                           {"InterleavedZeroBubble", Kind::kZB1P},
                                                           {"ZBVZeroBubble", Kind::kZBV},
                                                           {"DualPipeV", Kind::kDualPipeV}};
  std::vector<TorchCase> cases;
  for (const auto& [key, value] : root.fields()) {
    TorchCase c;
    c.key = key;
    std::vector<std::string> words = absl::StrSplit(key, ' ');
    for (const auto& [name, kind] : names) {
      if (words[0] == name) c.options.kind = kind;
    }
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripPrefix(words[1], "p="), &c.options.ranks));
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripPrefix(words[2], "v="), &c.options.chunks));
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripPrefix(words[3], "n="), &c.options.microbatches));
    c.ranks.resize(c.options.ranks);
    for (const auto& [rank, actions] : value.struct_value().fields()) {
      int r = 0;
      EXPECT_TRUE(absl::SimpleAtoi(rank, &r));
      for (const auto& a : actions.list_value().values()) {
        if (!a.string_value().empty()) c.ranks[r].push_back(a.string_value());
      }
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<std::string> TorchActions(const Schedule& s, int rank) {
  std::vector<std::string> out;
  for (const Action& a : s.programs[rank].actions) out.push_back(TorchActionString(a));
  return out;
}

TEST(TorchParityTest, EveryPipelineOrderMatches) {
  const std::vector<TorchCase> cases = LoadTorchCases();
  ASSERT_EQ(cases.size(), 11);
  int matched = 0;
  for (const TorchCase& c : cases) {
    SCOPED_TRACE(c.key);
    ASSERT_OK_AND_ASSIGN(Schedule s, Generate(c.options));
    bool all = true;
    for (int r = 0; r < c.options.ranks; ++r) {
      EXPECT_EQ(absl::StrJoin(TorchActions(s, r), " "), absl::StrJoin(c.ranks[r], " ")) << "rank " << r;
      all = all && TorchActions(s, r) == c.ranks[r];
    }
    matched += all;
  }
  EXPECT_EQ(matched, cases.size());
}

// Must-fail twin: swapping two actions of one rank is noticed.
TEST(TorchParityTest, SwappedActionsDoNotMatch) {
  const std::vector<TorchCase> cases = LoadTorchCases();
  for (const TorchCase& c : cases) {
    ASSERT_OK_AND_ASSIGN(Schedule s, Generate(c.options));
    std::vector<std::string> expected = c.ranks[0];
    std::swap(expected[1], expected[expected.size() - 1]);
    EXPECT_NE(TorchActions(s, 0), expected) << c.key;
  }
}

}  // namespace
}  // namespace tandem::schedule
