#include "model/config.h"

#include <cstring>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model.h"

namespace tandem::model {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ConfigTest, DefaultsAreValid) { EXPECT_OK(ValidateConfig(ModelConfig())); }

// Each bad field is named with what was expected.
TEST(ConfigTest, BadConfigsRejected) {
  ModelConfig c;
  c.top_k = 9;
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(kInvalid, HasSubstr("top_k: expected a value in [1, num_experts = 8], got 9")));
  c = ModelConfig();
  c.n_group = 3;
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(kInvalid, HasSubstr("n_group: expected a divisor of num_experts = 8, got 3")));
  c = ModelConfig();
  c.n_group = 4;
  c.topk_group = 5;
  EXPECT_THAT(ValidateConfig(c), StatusIs(kInvalid, HasSubstr("topk_group: expected a value in [1, n_group = 4]")));
  c = ModelConfig();
  c.n_group = 4;
  c.topk_group = 1;
  c.top_k = 3;  // one group of 2 experts cannot supply 3
  EXPECT_THAT(ValidateConfig(c), StatusIs(kInvalid, HasSubstr("topk_group * experts per group >= top_k")));
  c = ModelConfig();
  c.hidden = 0;
  EXPECT_THAT(ValidateConfig(c), StatusIs(kInvalid, HasSubstr("hidden: expected a value in [1,")));
  c = ModelConfig();
  c.num_dense_layers = 3;
  EXPECT_THAT(ValidateConfig(c), StatusIs(kInvalid, HasSubstr("num_dense_layers")));
  c = ModelConfig();
  c.route_scale = -1;
  EXPECT_THAT(ValidateConfig(c), StatusIs(kInvalid, HasSubstr("route_scale")));
  c = ModelConfig();
  c.top_k = 0;
  EXPECT_THAT(Model::Create(c).status(), StatusIs(kInvalid, HasSubstr("top_k")));
}

// Same seed: same bits; another seed: different values.
TEST(ConfigTest, InitIsDeterministicFromSeed) {
  ModelConfig c;
  c.num_dense_layers = 1;
  c.seed = 42;
  ASSERT_OK_AND_ASSIGN(auto a, Model::Create(c));
  ASSERT_OK_AND_ASSIGN(auto b, Model::Create(c));
  c.seed = 43;
  ASSERT_OK_AND_ASSIGN(auto other, Model::Create(c));
  std::vector<Parameter*> pa = a->Parameters(), pb = b->Parameters(), po = other->Parameters();
  ASSERT_EQ(pa.size(), pb.size());
  int differ = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]->name, pb[i]->name);
    EXPECT_EQ(std::memcmp(pa[i]->value.raw(), pb[i]->value.raw(), pa[i]->value.bytes()), 0) << pa[i]->name;
    differ += std::memcmp(pa[i]->value.raw(), po[i]->value.raw(), pa[i]->value.bytes()) != 0;
  }
  // Every random parameter differs with the seed; norms (ones) do not.
  int norms = 0;
  for (Parameter* p : pa) norms += !p->decay;
  EXPECT_EQ(differ, static_cast<int>(pa.size()) - norms);
  EXPECT_EQ(ConfigToJson(c).find("\"top_k\":2") != std::string::npos, true);
}

}  // namespace
}  // namespace tandem::model
