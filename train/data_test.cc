#include "train/data.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::train {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

// Rows of a tensor as vectors.
std::vector<std::vector<float>> Rows(const model::Tensor& t) {
  std::vector<std::vector<float>> rows;
  for (int64_t i = 0; i < t.dim(0); ++i) {
    rows.emplace_back(t.span().begin() + i * t.dim(1), t.span().begin() + (i + 1) * t.dim(1));
  }
  return rows;
}

// All samples of a step, in global order, from any split of its batch.
std::vector<std::vector<float>> Samples(const model::ModelConfig& c, int step, int microbatches, int tokens,
                                        int replicas) {
  std::vector<std::vector<float>> out;
  std::vector<PipelineData> parts;
  for (int r = 0; r < replicas; ++r) parts.push_back(TeacherData(c, step, microbatches, tokens, replicas, r).value());
  for (int g = 0; g < microbatches; ++g) {
    for (int r = 0; r < replicas; ++r) {
      for (auto& row : Rows(parts[r].inputs[g])) out.push_back(row);
      EXPECT_EQ(parts[r].targets[g].normalizer, static_cast<double>(microbatches) * tokens);
    }
  }
  return out;
}

// Sample j of a step is the same bits however the global batch of 24 is
// split (replicas, micro-batches); another step has other samples.
TEST(DataTest, SamplesAreIndexedGlobally) {
  model::ModelConfig c;
  const auto whole = Samples(c, 3, 1, 24, 1);
  ASSERT_EQ(whole.size(), 24u);
  EXPECT_EQ(Samples(c, 3, 4, 6, 2), whole);
  EXPECT_EQ(Samples(c, 3, 2, 12, 4), whole);
  EXPECT_EQ(Samples(c, 3, 3, 8, 8), whole);
  EXPECT_NE(Samples(c, 4, 1, 24, 1), whole);
}

TEST(DataTest, BadSplitsAreRefusedNamingThem) {
  model::ModelConfig c;
  EXPECT_THAT(TeacherData(c, 0, 2, 6, 4, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("replica 0 of 4")));
  EXPECT_THAT(TeacherData(c, 0, 2, 8, 4, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("replica 4 of 4")));
  EXPECT_THAT(TeacherData(c, -1, 2, 8).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("-1")));
  const PipelineData a = TeacherData(c, 0, 2, 8, 2, 0).value();
  PipelineData b = TeacherData(c, 0, 2, 8, 2, 1).value();
  ASSERT_OK(ConcatTokens({a, b}).status());
  b.targets[1].normalizer = 3;
  EXPECT_THAT(ConcatTokens({a, b}).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("part 1")));
}

}  // namespace
}  // namespace tandem::train
