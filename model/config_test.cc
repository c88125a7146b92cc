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

// The closed form against the parameters a model really has: with and
// without dense blocks and shared experts.
TEST(ConfigTest, NumParametersCountsTheModelsParameters) {
  for (int dense : {0, 1, 2}) {
    for (int shared : {0, 1, 3}) {
      ModelConfig c;
      c.num_layers = 3;
      c.num_dense_layers = dense;
      c.num_shared_experts = shared;
      c.input_dim = 5;
      c.output_dim = 7;
      c.dense_inter = 11;
      c.moe_inter = 6;
      ASSERT_OK_AND_ASSIGN(auto m, Model::Create(c));
      int64_t n = 0;
      for (Parameter* p : m->Parameters()) n += p->value.numel();
      EXPECT_EQ(NumParameters(c), n) << dense << " dense, " << shared << " shared";
    }
  }
}

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
}

// The checkpoint's config JSON: keys in the documented order, enums as
// strings, and back to the same config.
TEST(ConfigTest, JsonRoundTrip) {
  ModelConfig c;
  c.num_dense_layers = 1;
  c.score_func = ScoreFunc::kSoftmax;
  c.loss = LossKind::kCrossEntropy;
  c.route_scale = 2.5f;
  c.bias_update_speed = 0.01f;
  c.seed = ~uint64_t{0};
  const std::string text = ConfigToJson(c);
  EXPECT_EQ(text,
            R"({"input_dim":8,"hidden":16,"output_dim":8,"num_layers":2,"num_dense_layers":1,"dense_inter":32,)"
            R"("num_experts":8,"moe_inter":8,"num_shared_experts":1,"top_k":2,"n_group":1,"topk_group":1,)"
            R"("score_func":"softmax","route_scale":2.5,"bias_update_speed":0.009999999776482582,)"
            R"("norm_eps":9.999999974752427e-07,"loss":"cross_entropy","seed":18446744073709551615,"init_scale":1.0})");
  ASSERT_OK_AND_ASSIGN(ModelConfig back, ConfigFromJson(text));
  EXPECT_EQ(ConfigDifference(c, back), "");
  back.hidden = 32;
  EXPECT_EQ(ConfigDifference(c, back), "hidden: expected 16, got 32");
}

TEST(ConfigTest, JsonErrorsNameTheKey) {
  std::string text = ConfigToJson(ModelConfig());
  EXPECT_OK(ConfigFromJson(text));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  EXPECT_THAT(ConfigFromJson(with("\"hidden\":16", "\"hidden\":16,\"hidden\":16")),
              StatusIs(kInvalid, HasSubstr("duplicate key 'hidden'")));
  EXPECT_THAT(ConfigFromJson(with("\"hidden\":16,", "")), StatusIs(kInvalid, HasSubstr("hidden: missing")));
  EXPECT_THAT(ConfigFromJson(with("\"hidden\":16", "\"hidden\":16,\"extra\":1")),
              StatusIs(kInvalid, HasSubstr("unknown key 'extra'")));
  EXPECT_THAT(ConfigFromJson(with("\"hidden\":16", "\"hidden\":1.5")),
              StatusIs(kInvalid, HasSubstr("hidden: expected a 32-bit integer, got 1.5")));
  EXPECT_THAT(ConfigFromJson(with("\"sigmoid\"", "\"relu\"")),
              StatusIs(kInvalid, HasSubstr("score_func: expected \"sigmoid\" or \"softmax\", got \"relu\"")));
  EXPECT_THAT(ConfigFromJson("{\"hidden\": "), StatusIs(kInvalid, HasSubstr("line 1 column")));
}

}  // namespace
}  // namespace tandem::model
