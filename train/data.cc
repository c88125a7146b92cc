#include "train/data.h"

#include <cmath>
#include <random>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::train {

PipelineData TeacherData(const model::ModelConfig& c, int microbatches, int tokens, int replica, int step,
                         int normalizer) {
  PipelineData d;
  std::mt19937 teacher(12345);
  std::normal_distribution<float> normal;
  std::vector<float> w(int64_t{c.input_dim} * c.output_dim);
  for (float& x : w) x = normal(teacher) / std::sqrt(static_cast<float>(c.input_dim));
  for (int g = 0; g < microbatches; ++g) {
    std::mt19937 rng(1000003u * step + 7919u * g + 104729u * replica + 17);
    std::vector<float> x(int64_t{tokens} * c.input_dim), y(int64_t{tokens} * c.output_dim, 0.0f);
    for (float& v : x) v = normal(rng);
    for (int t = 0; t < tokens; ++t) {
      for (int o = 0; o < c.output_dim; ++o) {
        float acc = 0;
        for (int i = 0; i < c.input_dim; ++i) acc += x[t * c.input_dim + i] * w[i * c.output_dim + o];
        y[t * c.output_dim + o] = std::tanh(acc);
      }
    }
    d.inputs.push_back(*model::Tensor::FromVector({tokens, c.input_dim}, x));
    model::Target target;
    target.values = *model::Tensor::FromVector({tokens, c.output_dim}, y);
    target.normalizer = normalizer;
    d.targets.push_back(std::move(target));
  }
  return d;
}

absl::StatusOr<PipelineData> ConcatTokens(const std::vector<PipelineData>& replicas) {
  if (replicas.empty()) return absl::InvalidArgumentError("replicas: expected at least one, got none");
  const size_t n = replicas[0].inputs.size();
  PipelineData all;
  for (size_t g = 0; g < n; ++g) {
    std::vector<float> x, y;
    int64_t tokens = 0;
    for (size_t r = 0; r < replicas.size(); ++r) {
      const PipelineData& p = replicas[r];
      if (p.inputs.size() != n || p.targets.size() != n || p.inputs[g].dim(1) != replicas[0].inputs[g].dim(1) ||
          p.targets[g].values.dim(1) != replicas[0].targets[g].values.dim(1)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("replica %d: expected %d micro-batches of the widths of replica 0", r, n));
      }
      x.insert(x.end(), p.inputs[g].span().begin(), p.inputs[g].span().end());
      y.insert(y.end(), p.targets[g].values.span().begin(), p.targets[g].values.span().end());
      tokens += p.inputs[g].dim(0);
    }
    TANDEM_ASSIGN_OR_RETURN(model::Tensor xt, model::Tensor::FromVector({tokens, replicas[0].inputs[g].dim(1)}, x));
    model::Target t;
    TANDEM_ASSIGN_OR_RETURN(t.values, model::Tensor::FromVector({tokens, replicas[0].targets[g].values.dim(1)}, y));
    t.normalizer = static_cast<double>(tokens);
    all.inputs.push_back(std::move(xt));
    all.targets.push_back(std::move(t));
  }
  return all;
}

}  // namespace tandem::train
