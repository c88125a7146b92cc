#include "model/testdata/golden.h"

#include "base/status_macros.h"
#include "model/stage.h"
#include "model/testing/grad_check.h"

namespace tandem::model::testing {

ModelConfig GoldenConfig() {
  ModelConfig c;
  c.num_layers = 2;
  c.num_dense_layers = 1;
  c.num_experts = 4;
  c.top_k = 2;
  c.seed = 3;
  c.bias_update_speed = 0.01f;
  return c;
}

absl::StatusOr<Golden> MakeGolden() {
  Golden g;
  TANDEM_ASSIGN_OR_RETURN(g.model, Model::Create(GoldenConfig()));
  g.optimizer = std::make_unique<AdamW>(AdamWOptions{});
  for (int step = 0; step < 2; ++step) {
    TANDEM_ASSIGN_OR_RETURN(auto stage, Stage::Create(g.model.get(), 0, g.model->num_units(), {}));
    Target t;
    t.values = RandomTensor({6, g.model->config().output_dim}, 50 + step);
    TANDEM_RETURN_IF_ERROR(
        stage->Forward(0, RandomTensor({6, g.model->config().input_dim}, 60 + step, 2.0f), &t).status());
    TANDEM_RETURN_IF_ERROR(stage->Backward(0, Tensor()).status());
    TANDEM_RETURN_IF_ERROR(g.optimizer->Step(g.model->Parameters()));
    g.model->ZeroGrad();
    TANDEM_RETURN_IF_ERROR(g.model->EndStep());
  }
  return g;
}

}  // namespace tandem::model::testing
