#include "model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace tandem::model {
namespace {

// True when (value a, index ia) ranks before (value b, index ib): larger
// value first, lower index on ties; NaN never ranks before a number.
inline bool Before(float a, int ia, float b, int ib) {
  if (std::isnan(b)) return !std::isnan(a) || ia < ib;
  if (std::isnan(a)) return false;
  return a > b || (a == b && ia < ib);
}

}  // namespace

absl::Status SelectExperts(const ModelConfig& config, absl::Span<const float> choice, int64_t tokens,
                           absl::Span<int32_t> idx) {
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config));
  const int e = config.num_experts;
  const int k = config.top_k;
  if (static_cast<int64_t>(choice.size()) != tokens * e || static_cast<int64_t>(idx.size()) != tokens * k) {
    return absl::InvalidArgumentError(absl::StrCat("select experts: expected ", tokens * e, " scores and ", tokens * k,
                                                   " index slots, got ", choice.size(), " and ", idx.size()));
  }
  const int groups = config.n_group;
  const int per_group = e / groups;
  const int group_top = std::min(2, per_group);
  std::vector<float> group_score(groups);
  std::vector<char> allowed(e);
  std::vector<char> taken(e);
  std::vector<char> group_taken(groups);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* c = choice.data() + t * e;
    if (groups > 1) {
      for (int g = 0; g < groups; ++g) {
        // Sum of the largest `group_top` values of the group.
        float best[2] = {0, 0};
        int best_i[2] = {-1, -1};
        for (int j = g * per_group; j < (g + 1) * per_group; ++j) {
          if (best_i[0] < 0 || Before(c[j], j, best[0], best_i[0])) {
            best[1] = best[0];
            best_i[1] = best_i[0];
            best[0] = c[j];
            best_i[0] = j;
          } else if (best_i[1] < 0 || Before(c[j], j, best[1], best_i[1])) {
            best[1] = c[j];
            best_i[1] = j;
          }
        }
        group_score[g] = group_top == 2 ? best[0] + best[1] : best[0];
      }
      std::fill(group_taken.begin(), group_taken.end(), 0);
      std::fill(allowed.begin(), allowed.end(), 0);
      for (int r = 0; r < config.topk_group; ++r) {
        int pick = -1;
        for (int g = 0; g < groups; ++g) {
          if (group_taken[g]) continue;
          if (pick < 0 || Before(group_score[g], g, group_score[pick], pick)) {
            pick = g;
          }
        }
        group_taken[pick] = 1;
        std::fill(allowed.begin() + pick * per_group, allowed.begin() + (pick + 1) * per_group, 1);
      }
    } else {
      std::fill(allowed.begin(), allowed.end(), 1);
    }
    std::fill(taken.begin(), taken.end(), 0);
    for (int r = 0; r < k; ++r) {
      int pick = -1;
      for (int j = 0; j < e; ++j) {
        if (!allowed[j] || taken[j]) continue;
        if (pick < 0 || Before(c[j], j, c[pick], pick)) pick = j;
      }
      taken[pick] = 1;
      idx[t * k + r] = pick;
    }
  }
  return absl::OkStatus();
}

Router::Router(const std::string& name, const ModelConfig& config)
    : config_(config),
      gate_(name, config.hidden, config.num_experts),
      bias_(Tensor::Zeros({config.num_experts})),
      bias_name_(name + ".bias") {}

absl::StatusOr<Router::Output> Router::Forward(const Tensor& x, Saved* saved) const {
  Saved local;
  Saved& s = saved != nullptr ? *saved : local;
  TANDEM_ASSIGN_OR_RETURN(Tensor z, gate_.Forward(x, &s.in));
  const int64_t t = x.dim(0);
  const int e = config_.num_experts;
  const int k = config_.top_k;
  float* zp = z.data<float>();
  if (config_.score_func == ScoreFunc::kSigmoid) {
    for (int64_t i = 0; i < z.numel(); ++i) zp[i] = 1.0f / (1.0f + std::exp(-zp[i]));
  } else {
    for (int64_t i = 0; i < t; ++i) {
      float* row = zp + i * e;
      const float m = *std::max_element(row, row + e);
      float sum = 0.0f;
      for (int j = 0; j < e; ++j) {
        row[j] = std::exp(row[j] - m);
        sum += row[j];
      }
      for (int j = 0; j < e; ++j) row[j] /= sum;
    }
  }
  s.scores = z;
  Tensor choice = Tensor::Zeros({t, e});
  const float* b = bias_.data<float>();
  for (int64_t i = 0; i < t; ++i) {
    for (int j = 0; j < e; ++j) choice.data<float>()[i * e + j] = zp[i * e + j] + b[j];
  }
  Output out;
  out.idx.resize(t * k);
  TANDEM_RETURN_IF_ERROR(SelectExperts(config_, choice.span(), t, absl::MakeSpan(out.idx)));
  out.weights = Tensor::Zeros({t, k});
  for (int64_t i = 0; i < t; ++i) {
    float* w = out.weights.data<float>() + i * k;
    float sum = 0.0f;
    for (int r = 0; r < k; ++r) {
      w[r] = zp[i * e + out.idx[i * k + r]];
      sum += w[r];
    }
    for (int r = 0; r < k; ++r) {
      w[r] =
          config_.score_func == ScoreFunc::kSigmoid ? (w[r] / sum) * config_.route_scale : w[r] * config_.route_scale;
    }
  }
  s.idx = out.idx;
  return out;
}

absl::StatusOr<Tensor> Router::Backward(const Saved& saved, const Tensor& dweights, WeightGradStore* store) {
  const int64_t t = saved.scores.dim(0);
  const int e = config_.num_experts;
  const int k = config_.top_k;
  TANDEM_RETURN_IF_ERROR(dweights.CheckShape(absl::StrCat(gate_.weight().name, ": weight gradient"), {t, k}));
  Tensor dz = Tensor::Zeros({t, e});
  const float r_scale = config_.route_scale;
  for (int64_t i = 0; i < t; ++i) {
    const float* s = saved.scores.data<float>() + i * e;
    const float* dw = dweights.data<float>() + i * k;
    const int32_t* id = saved.idx.data() + i * k;
    float* dzi = dz.data<float>() + i * e;
    if (config_.score_func == ScoreFunc::kSigmoid) {
      float sum = 0.0f;
      float dot = 0.0f;  // sum_j dw_j s_j
      for (int r = 0; r < k; ++r) {
        sum += s[id[r]];
        dot += dw[r] * s[id[r]];
      }
      for (int r = 0; r < k; ++r) {
        const float sj = s[id[r]];
        const float ds = r_scale * (dw[r] / sum - dot / (sum * sum));
        dzi[id[r]] = ds * sj * (1.0f - sj);
      }
    } else {
      float dot = 0.0f;  // sum_j ds_j s_j over the chosen experts
      for (int r = 0; r < k; ++r) dot += r_scale * dw[r] * s[id[r]];
      for (int j = 0; j < e; ++j) dzi[j] = -s[j] * dot;
      for (int r = 0; r < k; ++r) dzi[id[r]] += s[id[r]] * r_scale * dw[r];
    }
  }
  TANDEM_ASSIGN_OR_RETURN(Tensor dx, gate_.BackwardInput(saved.in, dz));
  gate_.BackwardWeight(saved.in, dz, store);
  return dx;
}

}  // namespace tandem::model
