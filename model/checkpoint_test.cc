#include "model/checkpoint.h"

#include <cstring>
#include <fstream>

#include "base/testing/runfiles.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/stage.h"
#include "model/testdata/golden.h"
#include "model/testing/grad_check.h"

namespace tandem::model {
namespace {

using ::tandem::model::testing::RandomTensor;
using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

ModelConfig Config() { return testing::GoldenConfig(); }

// One training step: forward, backward, AdamW, bias update.
void TrainStep(Model& m, Optimizer& opt, int step) {
  auto stage = Stage::Create(&m, 0, m.num_units(), {}).value();
  Target t;
  t.values = RandomTensor({6, m.config().output_dim}, 50 + step);
  ASSERT_OK(stage->Forward(0, RandomTensor({6, m.config().input_dim}, 60 + step, 2.0f), &t).status());
  ASSERT_OK(stage->Backward(0, Tensor()).status());
  ASSERT_OK(opt.Step(m.Parameters()));
  m.ZeroGrad();
  ASSERT_OK(m.EndStep());
}

void ExpectSameParameters(Model& a, Model& b) {
  std::vector<Parameter*> pa = a.Parameters(), pb = b.Parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(std::memcmp(pa[i]->value.raw(), pb[i]->value.raw(), pa[i]->value.bytes()), 0) << pa[i]->name;
  }
  for (size_t l = 0; l < a.moe_layers().size(); ++l) {
    EXPECT_EQ(std::memcmp(a.moe_layers()[l]->router().bias().raw(), b.moe_layers()[l]->router().bias().raw(),
                          a.moe_layers()[l]->router().bias().bytes()),
              0);
  }
}

// Save after two steps, load into a model built from another seed, train
// both on: identical bits (weights, biases and AdamW state restored).
TEST(CheckpointTest, ResumeIsExact) {
  const std::string path = ::testing::TempDir() + "/resume.safetensors";
  ASSERT_OK_AND_ASSIGN(auto a, Model::Create(Config()));
  AdamW opt_a({});
  TrainStep(*a, opt_a, 0);
  TrainStep(*a, opt_a, 1);
  ASSERT_OK(SaveCheckpoint(*a, &opt_a, path));
  ModelConfig other = Config();
  other.seed = 99;
  ASSERT_OK_AND_ASSIGN(auto b, Model::Create(other));
  AdamW opt_b({});
  // The config (with its seed) is part of the file: a mismatch is refused.
  EXPECT_THAT(LoadCheckpoint(*b, &opt_b, path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tandem.config: written for another model (seed: expected 99, got 3)")));
  ASSERT_OK_AND_ASSIGN(b, Model::Create(Config()));
  for (Parameter* p : b->Parameters()) p->value.SetZero();
  ASSERT_OK(LoadCheckpoint(*b, &opt_b, path));
  EXPECT_EQ(opt_b.steps(), 2);
  ExpectSameParameters(*a, *b);
  TrainStep(*a, opt_a, 2);
  TrainStep(*b, opt_b, 2);
  ExpectSameParameters(*a, *b);
  // Names follow the documented scheme.
  ASSERT_OK_AND_ASSIGN(SafetensorsFile f, ReadSafetensors(path));
  for (const char* name :
       {"input_proj.weight", "layers.0.ffn.w1.weight", "layers.1.moe.gate.weight", "layers.1.moe.gate.bias",
        "layers.1.moe.experts.3.w2.weight", "layers.1.moe.shared.w3.weight", "norm.weight", "head.weight",
        "optim.exp_avg.head.weight", "optim.exp_avg_sq.layers.1.moe.experts.0.w1.weight"}) {
    EXPECT_NE(f.Find(name), nullptr) << name;
  }
  EXPECT_EQ(f.metadata.at("tandem.optimizer"), "adamw");
}

// A file written before the JSON library changed (testdata/golden.h says
// how) still loads, into exactly the state that wrote it.
TEST(CheckpointTest, GoldenCheckpointLoads) {
  ASSERT_OK_AND_ASSIGN(testing::Golden want, testing::MakeGolden());
  ASSERT_OK_AND_ASSIGN(auto got, Model::Create(Config()));
  AdamW opt({});
  ASSERT_OK(LoadCheckpoint(*got, &opt, ::tandem::testing::RunfilePath("model/testdata/golden_checkpoint.safetensors")));
  EXPECT_EQ(opt.steps(), 2);
  ExpectSameParameters(*want.model, *got);
  std::vector<Parameter*> pw = want.model->Parameters(), pg = got->Parameters();
  for (size_t i = 0; i < pw.size(); ++i) {
    for (int s = 0; s < 2; ++s) EXPECT_EQ(pw[i]->state[s], pg[i]->state[s]) << pw[i]->name << " slot " << s;
  }
  // Must-fail twin: the freshly initialised model is not that state.
  ASSERT_OK_AND_ASSIGN(auto fresh, Model::Create(Config()));
  EXPECT_NE(std::memcmp(fresh->Parameters()[0]->value.raw(), got->Parameters()[0]->value.raw(),
                        got->Parameters()[0]->value.bytes()),
            0);
}

TEST(CheckpointTest, BadFilesRejected) {
  const std::string path = ::testing::TempDir() + "/bad.safetensors";
  ASSERT_OK_AND_ASSIGN(auto m, Model::Create(Config()));
  Sgd sgd({});
  ASSERT_OK(SaveCheckpoint(*m, &sgd, path));
  AdamW adam({});
  EXPECT_THAT(LoadCheckpoint(*m, &adam, path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tandem.optimizer: expected adamw")));
  // Drop one tensor: named in the error.
  NamedTensors state = CollectState(*m, nullptr);
  state.erase(state.begin() + 2);
  ASSERT_OK(WriteSafetensors(path, state, CheckpointMetadata(*m, nullptr)));
  EXPECT_THAT(LoadCheckpoint(*m, nullptr, path), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("': missing")));
  // Truncate the file: rejected by the parser.
  ASSERT_OK(SaveCheckpoint(*m, nullptr, path));
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 10);
  EXPECT_THAT(LoadCheckpoint(*m, nullptr, path), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated file?")));
}

}  // namespace
}  // namespace tandem::model
