#include "model/safetensors.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/init.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;

std::string Header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return out + json + data;
}

std::string Sample() {
  Tensor a = Tensor::FromVector({2, 2}, {1, 2, 3, 4}).value();
  Tensor b = Tensor::Zeros({3}, DType::kBF16);
  b.data<uint16_t>()[1] = FloatToBf16(-2.5f);
  return SerializeSafetensors({{"a", a}, {"b", b}}, {{"format", "pt"}}).value();
}

// The layout by hand: u64 header length, JSON header padded with spaces to
// 8 bytes, then the raw little-endian data.
TEST(SafetensorsTest, LayoutByHand) {
  const std::string bytes = Sample();
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_THAT(header, HasSubstr(R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})"));
  EXPECT_THAT(header, HasSubstr(R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]})"));
  EXPECT_THAT(header, HasSubstr(R"("__metadata__":{"format":"pt"})"));
  ASSERT_EQ(bytes.size(), 8 + n + 22);
  float third;
  std::memcpy(&third, bytes.data() + 8 + n + 8, 4);
  EXPECT_EQ(third, 3.0f);
  ASSERT_OK_AND_ASSIGN(SafetensorsFile f, ParseSafetensors(bytes));
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.Find("a")->data<float>()[3], 4.0f);
  EXPECT_EQ(Bf16ToFloat(f.Find("b")->data<uint16_t>()[1]), -2.5f);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  // A file written by another tool (unpadded header, reversed order) reads.
  const std::string other = Header(
      R"({"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
      std::string("\0\0\x80\x3f\0\0\0\x40", 8));
  ASSERT_OK_AND_ASSIGN(SafetensorsFile g, ParseSafetensors(other));
  EXPECT_EQ(g.Find("x")->data<float>()[0], 1.0f);
  EXPECT_EQ(g.Find("y")->data<float>()[0], 2.0f);
}

TEST(SafetensorsTest, CorruptFilesRejected) {
  const std::string ok = Sample();
  // Every truncation is rejected.
  for (size_t len = 0; len < ok.size(); ++len) {
    EXPECT_THAT(ParseSafetensors(ok.substr(0, len)).status(), StatusIs(kDataLoss, HasSubstr("safetensors"))) << len;
  }
  EXPECT_THAT(ParseSafetensors(ok.substr(0, 5)).status(),
              StatusIs(kDataLoss, HasSubstr("expected at least 8 bytes, got 5 (truncated file?)")));
  EXPECT_THAT(ParseSafetensors(ok + "x").status(), StatusIs(kDataLoss, HasSubstr("data: expected 22 bytes")));
  const std::string d8(8, '\0');
  EXPECT_THAT(ParseSafetensors(Header(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", d8)).status(),
              StatusIs(kDataLoss, HasSubstr("tensor 'x': dtype: expected F32 or BF16, got 'F64'")));
  EXPECT_THAT(ParseSafetensors(Header(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8)).status(),
              StatusIs(kDataLoss, HasSubstr("expected 12 bytes for shape [3], got 8")));
  EXPECT_THAT(ParseSafetensors(Header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)).status(),
              StatusIs(kDataLoss, HasSubstr("expected begin 0 (tensors must tile the data), got 4")));
  EXPECT_THAT(
      ParseSafetensors(
          Header(
              R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              d8))
          .status(),
      StatusIs(kDataLoss, HasSubstr("tensors must tile")));
  EXPECT_THAT(ParseSafetensors(Header(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", "")).status(),
              StatusIs(kDataLoss, HasSubstr("shape: expected integers >= 0")));
  EXPECT_THAT(ParseSafetensors(Header(R"([1, 2])", "")).status(),
              StatusIs(kDataLoss, HasSubstr("expected a JSON object")));
  EXPECT_THAT(ParseSafetensors(Header(R"({"x":)", "")).status(), StatusIs(kDataLoss, HasSubstr("header: line 1")));
  // A tensor named twice is refused, not resolved to either.
  EXPECT_THAT(
      ParseSafetensors(
          Header(
              R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              d8))
          .status(),
      StatusIs(kDataLoss, HasSubstr("duplicate key 'x'")));
  std::string huge = ok;
  huge[7] = '\x7f';
  EXPECT_THAT(ParseSafetensors(huge).status(), StatusIs(kDataLoss, HasSubstr("header length")));
}

// Fuzz: random byte changes, insertions and cuts never crash; the result is
// either a valid file or kDataLoss.
TEST(SafetensorsTest, FuzzNeverCrashes) {
  const std::string ok = Sample();
  SplitMix64 rng(77);
  int rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = ok;
    const int edits = 1 + rng.Next() % 4;
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng.Next() % (s.size() + 1);
      switch (rng.Next() % 4) {
        case 0:
          if (pos < s.size()) s[pos] = static_cast<char>(rng.Next());
          break;
        case 1:
          s.insert(pos, 1, "{}[],:\"0-9e "[rng.Next() % 12]);
          break;
        case 2:
          s.resize(pos);
          break;
        default:
          if (pos < 8 && pos < s.size()) s[pos] = static_cast<char>(s[pos] + 1);
      }
    }
    absl::StatusOr<SafetensorsFile> f = ParseSafetensors(s);
    if (!f.ok()) {
      ASSERT_EQ(f.status().code(), kDataLoss) << f.status();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 15000);
}

TEST(SafetensorsTest, AtomicWriteAndRead) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/atomic.safetensors";
  Tensor a = Tensor::FromVector({2}, {5, 6}).value();
  ASSERT_OK(WriteSafetensors(path, {{"a", a}}, {}));
  a.data<float>()[0] = 7;
  ASSERT_OK(WriteSafetensors(path, {{"a", a}}, {}));  // replaces
  ASSERT_OK_AND_ASSIGN(SafetensorsFile f, ReadSafetensors(path));
  EXPECT_EQ(f.Find("a")->data<float>()[0], 7.0f);
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
  // A failed write leaves the old file alone.
  EXPECT_THAT(WriteSafetensors(dir + "/no/such/dir/x.safetensors", {{"a", a}}, {}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot open for writing")));
  EXPECT_THAT(ReadSafetensors(dir + "/missing.safetensors").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot open")));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "short";
  EXPECT_THAT(ReadSafetensors(path).status(), StatusIs(kDataLoss, HasSubstr("atomic.safetensors: safetensors")));
  EXPECT_THAT(SerializeSafetensors({{"a", a}, {"a", a}}, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
}

}  // namespace
}  // namespace tandem::model
