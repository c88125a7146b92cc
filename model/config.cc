#include "model/config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/json.h"

namespace tandem::model {
namespace {

absl::Status Range(absl::string_view field, int64_t v, int64_t lo, int64_t hi,
                   absl::string_view hi_name = "") {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": expected a value in [", lo, ", ",
      hi_name.empty() ? absl::StrCat(hi) : absl::StrCat(hi_name, " = ", hi),
      "], got ", v));
}

}  // namespace

absl::Status ValidateConfig(const ModelConfig& c) {
  constexpr int64_t kMaxWidth = int64_t{1} << 20;
  const struct {
    absl::string_view name;
    int64_t value;
  } widths[] = {{"input_dim", c.input_dim},     {"hidden", c.hidden},
                {"output_dim", c.output_dim},   {"num_layers", c.num_layers},
                {"dense_inter", c.dense_inter}, {"num_experts", c.num_experts},
                {"moe_inter", c.moe_inter}};
  for (const auto& w : widths) {
    if (absl::Status s = Range(w.name, w.value, 1, kMaxWidth); !s.ok()) return s;
  }
  if (absl::Status s = Range("num_dense_layers", c.num_dense_layers, 0,
                             c.num_layers, "num_layers");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Range("num_shared_experts", c.num_shared_experts, 0, 64);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          Range("top_k", c.top_k, 1, c.num_experts, "num_experts");
      !s.ok()) {
    return s;
  }
  if (c.n_group < 1 || c.num_experts % c.n_group != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_group: expected a divisor of num_experts = ",
                     c.num_experts, ", got ", c.n_group));
  }
  if (absl::Status s =
          Range("topk_group", c.topk_group, 1, c.n_group, "n_group");
      !s.ok()) {
    return s;
  }
  const int per_group = c.num_experts / c.n_group;
  if (c.topk_group * per_group < c.top_k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "topk_group: expected topk_group * experts per group >= top_k = ",
        c.top_k, ", got ", c.topk_group, " * ", per_group));
  }
  if (!(c.route_scale > 0.0f) || !std::isfinite(c.route_scale)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "route_scale: expected a finite value > 0, got ", c.route_scale));
  }
  if (!(c.bias_update_speed >= 0.0f) || !std::isfinite(c.bias_update_speed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bias_update_speed: expected a finite value >= 0, got ",
                     c.bias_update_speed));
  }
  if (!(c.norm_eps > 0.0f) || !std::isfinite(c.norm_eps)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "norm_eps: expected a finite value > 0, got ", c.norm_eps));
  }
  if (!(c.init_scale > 0.0f) || !std::isfinite(c.init_scale)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "init_scale: expected a finite value > 0, got ", c.init_scale));
  }
  return absl::OkStatus();
}

std::string ConfigToJson(const ModelConfig& c) {
  json::Value v = json::Object{
      {"input_dim", c.input_dim},
      {"hidden", c.hidden},
      {"output_dim", c.output_dim},
      {"num_layers", c.num_layers},
      {"num_dense_layers", c.num_dense_layers},
      {"dense_inter", c.dense_inter},
      {"num_experts", c.num_experts},
      {"moe_inter", c.moe_inter},
      {"num_shared_experts", c.num_shared_experts},
      {"top_k", c.top_k},
      {"n_group", c.n_group},
      {"topk_group", c.topk_group},
      {"score_func", c.score_func == ScoreFunc::kSigmoid ? "sigmoid" : "softmax"},
      {"route_scale", static_cast<double>(c.route_scale)},
      {"bias_update_speed", static_cast<double>(c.bias_update_speed)},
      {"norm_eps", static_cast<double>(c.norm_eps)},
      {"loss", c.loss == LossKind::kMse ? "mse" : "cross_entropy"},
      {"seed", static_cast<int64_t>(c.seed)},
      {"init_scale", static_cast<double>(c.init_scale)},
  };
  return json::Serialize(v);
}

}  // namespace tandem::model
