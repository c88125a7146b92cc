#include "train/data.h"

#include <cmath>
#include <random>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace tandem::train {

absl::StatusOr<PipelineData> TeacherData(const model::ModelConfig& c, int step, int microbatches, int tokens,
                                         int replicas, int replica) {
  if (step < 0 || microbatches < 0 || tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("data: expected step, microbatches, tokens >= 0, got %d, %d, %d", step, microbatches, tokens));
  }
  if (replicas < 1 || replica < 0 || replica >= replicas || tokens % replicas != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: replica %d of %d: expected 0 <= replica < replicas dividing the %d tokens of a micro-batch", replica,
        replicas, tokens));
  }
  std::mt19937 teacher(12345);
  std::normal_distribution<float> normal;
  std::vector<float> w(int64_t{c.input_dim} * c.output_dim);
  for (float& x : w) x = normal(teacher) / std::sqrt(static_cast<float>(c.input_dim));
  const int share = tokens / replicas;
  PipelineData d;
  for (int g = 0; g < microbatches; ++g) {
    std::vector<float> x(int64_t{share} * c.input_dim), y(int64_t{share} * c.output_dim, 0.0f);
    for (int t = 0; t < share; ++t) {
      const int64_t sample = int64_t{g} * tokens + int64_t{replica} * share + t;
      std::seed_seq seed{static_cast<uint32_t>(step), static_cast<uint32_t>(sample),
                         static_cast<uint32_t>(sample >> 32)};
      std::mt19937 rng(seed);
      std::normal_distribution<float> sample_normal;
      float* xt = &x[int64_t{t} * c.input_dim];
      for (int i = 0; i < c.input_dim; ++i) xt[i] = sample_normal(rng);
      for (int o = 0; o < c.output_dim; ++o) {
        float acc = 0;
        for (int i = 0; i < c.input_dim; ++i) acc += xt[i] * w[int64_t{i} * c.output_dim + o];
        y[int64_t{t} * c.output_dim + o] = std::tanh(acc);
      }
    }
    TANDEM_ASSIGN_OR_RETURN(model::Tensor input, model::Tensor::FromVector({share, c.input_dim}, x));
    d.inputs.push_back(std::move(input));
    model::Target target;
    TANDEM_ASSIGN_OR_RETURN(target.values, model::Tensor::FromVector({share, c.output_dim}, y));
    target.normalizer = static_cast<double>(int64_t{microbatches} * tokens);
    d.targets.push_back(std::move(target));
  }
  return d;
}

absl::StatusOr<PipelineData> ConcatTokens(const std::vector<PipelineData>& parts) {
  if (parts.empty()) return absl::InvalidArgumentError("parts: expected at least one, got none");
  const PipelineData& first = parts[0];
  const size_t n = first.inputs.size();
  PipelineData all;
  for (size_t g = 0; g < n; ++g) {
    std::vector<float> x, y;
    int64_t tokens = 0;
    for (size_t r = 0; r < parts.size(); ++r) {
      const PipelineData& p = parts[r];
      if (p.inputs.size() != n || p.targets.size() != n || p.inputs[g].dim(1) != first.inputs[g].dim(1) ||
          p.targets[g].values.dim(1) != first.targets[g].values.dim(1) ||
          p.targets[g].normalizer != first.targets[g].normalizer) {
        return absl::InvalidArgumentError(
            absl::StrFormat("part %d: expected %d micro-batches of the widths and normalisers of part 0", r, n));
      }
      x.insert(x.end(), p.inputs[g].span().begin(), p.inputs[g].span().end());
      y.insert(y.end(), p.targets[g].values.span().begin(), p.targets[g].values.span().end());
      tokens += p.inputs[g].dim(0);
    }
    TANDEM_ASSIGN_OR_RETURN(model::Tensor xt, model::Tensor::FromVector({tokens, first.inputs[g].dim(1)}, x));
    model::Target t;
    TANDEM_ASSIGN_OR_RETURN(t.values, model::Tensor::FromVector({tokens, first.targets[g].values.dim(1)}, y));
    t.normalizer = first.targets[g].normalizer;
    all.inputs.push_back(std::move(xt));
    all.targets.push_back(std::move(t));
  }
  return all;
}

}  // namespace tandem::train
