#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schedule/formats/proto_io.h"
#include "schedule/formats/torch_csv.h"
#include "schedule/formats/trace.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "schedule/validator/validator.h"

namespace tandem::schedule {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

bool Same(const Schedule& a, const Schedule& b) {
  if (a.kind != b.kind || a.ranks != b.ranks || a.stages != b.stages || a.microbatches != b.microbatches ||
      a.directions != b.directions || a.chunks != b.chunks || a.lowered != b.lowered) {
    return false;
  }
  for (size_t i = 0; i < a.placement.size(); ++i) {
    if (a.placement[i].rank != b.placement[i].rank || a.placement[i].chunk != b.placement[i].chunk) return false;
  }
  for (int r = 0; r < a.ranks; ++r) {
    if (a.programs[r].actions != b.programs[r].actions || a.programs[r].batches != b.programs[r].batches) {
      return false;
    }
  }
  return true;
}

// Every protobuf encoding round-trips every kind, compute-only and lowered.
TEST(ProtoIoTest, RoundTripsEveryKind) {
  for (Kind kind : GeneratedKinds()) {
    ASSERT_OK_AND_ASSIGN(Schedule s, Generate({kind, 4, 8}));
    ASSERT_OK_AND_ASSIGN(Schedule lowered, Lower(s));
    for (const Schedule& x : {s, lowered}) {
      SCOPED_TRACE(KindName(kind));
      ASSERT_OK_AND_ASSIGN(Schedule bin, ParseBinaryProto(FormatBinaryProto(x)));
      EXPECT_TRUE(Same(x, bin));
      ASSERT_OK_AND_ASSIGN(Schedule txt, ParseTextProto(FormatTextProto(x)));
      EXPECT_TRUE(Same(x, txt));
      ASSERT_OK_AND_ASSIGN(Schedule json, ParseJson(FormatJson(x)));
      EXPECT_TRUE(Same(x, json));
    }
  }
}

// The binary encoding is told from every text format by content alone, for
// every kind and size (file names do not matter to the CLI).
TEST(ProtoIoTest, BinaryIsRecognisedByContent) {
  int binaries = 0;
  for (Kind kind : GeneratedKinds()) {
    for (int ranks : {2, 4, 8}) {
      absl::StatusOr<Schedule> s = Generate({kind, ranks, 2 * ranks});
      if (!s.ok()) continue;
      ASSERT_OK_AND_ASSIGN(Schedule lowered, Lower(*s));
      for (const Schedule& x : {*s, lowered}) {
        SCOPED_TRACE(KindName(kind));
        EXPECT_TRUE(LooksBinary(FormatBinaryProto(x)));
        ++binaries;
        EXPECT_FALSE(LooksBinary(FormatTextProto(x)));
        EXPECT_FALSE(LooksBinary(FormatJson(x)));
        EXPECT_FALSE(LooksBinary(FormatTrace(x)));
        absl::StatusOr<std::string> csv = FormatTorchCsv(x);
        if (csv.ok()) {
          EXPECT_FALSE(LooksBinary(*csv));
        }
      }
    }
  }
  EXPECT_GT(binaries, 30);
}

// Must-fail twin of Same(): one changed micro-batch is noticed.
TEST(ProtoIoTest, SameNoticesOneChangedValue) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 2, 2}));
  Schedule t = s;
  t.programs[1].actions[0].mb = 1;
  EXPECT_FALSE(Same(s, t));
}

TEST(ProtoIoTest, FieldErrorsNameThePath) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 2, 2}));
  proto::Schedule p = ToProto(s);
  p.mutable_programs(1)->mutable_actions(2)->set_stage(9);
  EXPECT_THAT(FromProto(p),
              StatusIs(absl::StatusCode::kInvalidArgument, "programs[1].actions[2].stage: expected 0..1, got 9"));
  p = ToProto(s);
  p.set_kind("zigzag");
  EXPECT_THAT(FromProto(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown schedule kind 'zigzag'")));
}

TEST(ProtoIoTest, TextErrorsHaveLineAndColumn) {
  EXPECT_THAT(ParseTextProto("kind: \"1f1b\"\nranks: two\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2 column 8")));
}

TEST(ProtoIoTest, BinaryErrorsHaveByteOffset) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::k1F1B, 2, 2}));
  std::string bytes = FormatBinaryProto(s);
  bytes.resize(bytes.size() - 3);
  EXPECT_THAT(ParseBinaryProto(bytes), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte offset")));
}

TEST(TorchCsvTest, RoundTripsComputeOnlyAndLowered) {
  for (Kind kind : GeneratedKinds()) {
    if (kind == Kind::kDualPipe) continue;
    ASSERT_OK_AND_ASSIGN(Schedule s, Generate({kind, 4, 8}));
    ASSERT_OK_AND_ASSIGN(std::string csv, FormatTorchCsv(s));
    ASSERT_OK_AND_ASSIGN(Schedule back, ParseTorchCsv(csv, kind));
    EXPECT_TRUE(Same(s, back)) << KindName(kind);
    ASSERT_OK_AND_ASSIGN(Schedule lowered, Lower(s, CommStyle::kTorch));
    ASSERT_OK_AND_ASSIGN(std::string csv2, FormatTorchCsv(lowered));
    ASSERT_OK_AND_ASSIGN(Schedule back2, ParseTorchCsv(csv2, kind));
    EXPECT_TRUE(Same(lowered, back2)) << KindName(kind);
    EXPECT_OK(Validate(back2));
  }
}

TEST(TorchCsvTest, ReadsPyTorchsSyntaxWithIdleSteps) {
  // Two ranks of DualPipeV(2, 4), as PyTorch writes it (idle cells kept).
  const std::string csv =
      "0F0,0F1,0F2,3F0,3I0,3W0,3F1,(0F3;3B1)OVERLAP_F_B,(3F2;0B0)OVERLAP_F_B,3B2,"
      "(3F3;0B1)OVERLAP_F_B,3B3,0I2,0W2,0I3,0W3\n"
      ",1F0,2F0,1F1,2F1,1F2,2B0,(2F2;1B0)OVERLAP_F_B,(1F3;2B1)OVERLAP_F_B,"
      "(2F3;1B1)OVERLAP_F_B,2B2,1B2,2I3,1I3,2W3,1W3\n";
  ASSERT_OK_AND_ASSIGN(Schedule s, ParseTorchCsv(csv, Kind::kDualPipeV));
  ASSERT_OK_AND_ASSIGN(Schedule expected, Generate({Kind::kDualPipeV, 2, 4}));
  EXPECT_EQ(s.placement[3].rank, 0);
  EXPECT_EQ(s.placement[3].chunk, 1);
  EXPECT_TRUE(Same(s, expected));
}

TEST(TorchCsvTest, DualPipeExportIsAnError) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipe, 4, 8}));
  EXPECT_THAT(FormatTorchCsv(s),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("places each stage on two ranks")));
}

TEST(TorchCsvTest, MalformedCellHasLineAndColumn) {
  EXPECT_THAT(ParseTorchCsv("0F0,0B0\n1F0,1X0,1B0\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2 column 5: '1X0'")));
  EXPECT_THAT(ParseTorchCsv("0F0,(0F1;0B0\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1 column 5")));
  EXPECT_THAT(ParseTorchCsv("0F0\n0B0\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stage 0 appears on ranks 0 and 1")));
}

TEST(TraceTest, HeaderLineGivesTheParameters) {
  ASSERT_OK_AND_ASSIGN(Schedule s, Generate({Kind::kDualPipeV, 2, 4}));
  const std::string text = "# kind=dualpipev ranks=2 microbatches=4\n" + FormatTrace(s);
  ASSERT_OK_AND_ASSIGN(Schedule back, ParseTrace(text));
  EXPECT_TRUE(Same(s, back));
}

TEST(TraceTest, MalformedTokensHaveLineAndColumn) {
  const TraceHeader h{Kind::kDualPipeV, 2, 4};
  EXPECT_THAT(ParseTrace("r0: F0.0 X1\nr1: F0.0\n", h),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1 column 10: expected an action")));
  EXPECT_THAT(ParseTrace("r0: F0.0 F5.0\nr1: F0.0\n", h),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1 column 14: rank 0 has no chunk 5")));
  EXPECT_THAT(ParseTrace("r0: F0.0 [SF0.0@1\nr1: F0.0\n", h),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1 column 18: expected ',' or ']'")));
  EXPECT_THAT(ParseTrace("r0: F0.0\n", h),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2 rank lines, got 1")));
  EXPECT_THAT(ParseTrace("r0: F0.9\nr1: F0.0\n", h),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("micro-batch 9 out of range")));
  EXPECT_THAT(ParseTrace("r0: F0.0\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind, ranks and microbatches are needed")));
}

}  // namespace
}  // namespace tandem::schedule
