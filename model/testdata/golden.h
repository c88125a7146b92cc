// -----------------------------------------------------------------------------
// File: golden.h
// -----------------------------------------------------------------------------
//
// The model state stored in golden_checkpoint.safetensors: GoldenConfig()'s
// model after two AdamW steps of forward, backward and bias update on fixed
// data. Everything is seeded, so MakeGolden() gives the same bits every time.
#ifndef TANDEM_MODEL_TESTDATA_GOLDEN_H_
#define TANDEM_MODEL_TESTDATA_GOLDEN_H_

#include <memory>

#include "absl/status/statusor.h"
#include "model/model.h"
#include "model/optimizer.h"

namespace tandem::model::testing {

ModelConfig GoldenConfig();

struct Golden {
  std::unique_ptr<Model> model;
  std::unique_ptr<AdamW> optimizer;
};
absl::StatusOr<Golden> MakeGolden();

}  // namespace tandem::model::testing

#endif  // TANDEM_MODEL_TESTDATA_GOLDEN_H_
