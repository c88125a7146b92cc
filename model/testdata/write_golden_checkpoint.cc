// Writes model/testdata/golden_checkpoint.safetensors: the reference model of
// checkpoint_test's GoldenConfig() after two AdamW steps (weights, gate
// biases, optimizer state). The committed file was written by this program
// at the commit that added it, before the JSON library changed, so that
// checkpoint_test proves files written earlier still load.
//
// Usage: bazel run //model/testdata:write_golden_checkpoint -- OUT_PATH
#include <cstdio>
#include <string>

#include "model/checkpoint.h"
#include "model/testdata/golden.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_golden_checkpoint OUT_PATH\n");
    return 2;
  }
  absl::StatusOr<tandem::model::testing::Golden> g = tandem::model::testing::MakeGolden();
  absl::Status s = g.ok() ? tandem::model::SaveCheckpoint(*g->model, g->optimizer.get(), argv[1]) : g.status();
  if (!s.ok()) {
    std::fprintf(stderr, "write_golden_checkpoint: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
