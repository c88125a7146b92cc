#include "model/config.h"

#include <climits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strict_json.h"

namespace tandem::model {
namespace {

absl::Status Range(absl::string_view field, int64_t v, int64_t lo, int64_t hi, absl::string_view hi_name = "") {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected a value in [", lo, ", ",
                                                 hi_name.empty() ? absl::StrCat(hi) : absl::StrCat(hi_name, " = ", hi),
                                                 "], got ", v));
}

}  // namespace

int64_t NumParameters(const ModelConfig& c) {
  const int64_t h = c.hidden;
  const int64_t swiglu = 3 * h * c.moe_inter;  // w1, w3: [inter, h]; w2: [h, inter]
  const int64_t moe = h * c.num_experts + int64_t{c.num_experts} * swiglu + int64_t{c.num_shared_experts} * swiglu;
  return int64_t{c.input_dim} * h + h + h * c.output_dim + int64_t{c.num_layers} * h +
         int64_t{c.num_dense_layers} * 3 * h * c.dense_inter + int64_t{NumMoeLayers(c)} * moe;
}

absl::Status ValidateConfig(const ModelConfig& c) {
  constexpr int64_t kMaxWidth = int64_t{1} << 20;
  const struct {
    absl::string_view name;
    int64_t value;
  } widths[] = {{"input_dim", c.input_dim},   {"hidden", c.hidden},           {"output_dim", c.output_dim},
                {"num_layers", c.num_layers}, {"dense_inter", c.dense_inter}, {"num_experts", c.num_experts},
                {"moe_inter", c.moe_inter}};
  for (const auto& w : widths) {
    if (absl::Status s = Range(w.name, w.value, 1, kMaxWidth); !s.ok()) return s;
  }
  if (absl::Status s = Range("num_dense_layers", c.num_dense_layers, 0, c.num_layers, "num_layers"); !s.ok()) {
    return s;
  }
  if (absl::Status s = Range("num_shared_experts", c.num_shared_experts, 0, 64); !s.ok()) {
    return s;
  }
  if (absl::Status s = Range("top_k", c.top_k, 1, c.num_experts, "num_experts"); !s.ok()) {
    return s;
  }
  if (c.n_group < 1 || c.num_experts % c.n_group != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_group: expected a divisor of num_experts = ", c.num_experts, ", got ", c.n_group));
  }
  if (absl::Status s = Range("topk_group", c.topk_group, 1, c.n_group, "n_group"); !s.ok()) {
    return s;
  }
  const int per_group = c.num_experts / c.n_group;
  if (c.topk_group * per_group < c.top_k) {
    return absl::InvalidArgumentError(absl::StrCat("topk_group: expected topk_group * experts per group >= top_k = ",
                                                   c.top_k, ", got ", c.topk_group, " * ", per_group));
  }
  if (!(c.route_scale > 0.0f) || !std::isfinite(c.route_scale)) {
    return absl::InvalidArgumentError(absl::StrCat("route_scale: expected a finite value > 0, got ", c.route_scale));
  }
  if (!(c.bias_update_speed >= 0.0f) || !std::isfinite(c.bias_update_speed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bias_update_speed: expected a finite value >= 0, got ", c.bias_update_speed));
  }
  if (!(c.norm_eps > 0.0f) || !std::isfinite(c.norm_eps)) {
    return absl::InvalidArgumentError(absl::StrCat("norm_eps: expected a finite value > 0, got ", c.norm_eps));
  }
  if (!(c.init_scale > 0.0f) || !std::isfinite(c.init_scale)) {
    return absl::InvalidArgumentError(absl::StrCat("init_scale: expected a finite value > 0, got ", c.init_scale));
  }
  return absl::OkStatus();
}

namespace {

// The config's fields in checkpoint order: name, and how to read and write
// it as JSON. Enums are strings; float fields are written as the double of
// the float (exact) and read back through float.
struct Field {
  const char* name;
  json::Json (*get)(const ModelConfig&);
  absl::Status (*set)(const json::Json&, ModelConfig*);
};

template <typename T>
absl::Status SetInt(const json::Json& v, const char* name, T* out) {
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{INT32_MAX} : v.get<int64_t>() < INT32_MIN)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a 32-bit integer, got ", json::Excerpt(v.dump(), 40)));
  }
  *out = static_cast<T>(v.get<int64_t>());
  return absl::OkStatus();
}

absl::Status SetFloat(const json::Json& v, const char* name, float* out) {
  if (!v.is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a number, got ", json::Excerpt(v.dump(), 40)));
  }
  *out = static_cast<float>(v.get<double>());
  return absl::OkStatus();
}

#define TANDEM_INT_FIELD(f)                                                                                       \
  Field {                                                                                                         \
#f, [](const ModelConfig& c) { return json::Json(c.f); }, [](const json::Json& v,                             \
                                                                 ModelConfig* c) { return SetInt(v, #f, &c->f); } \
  }
#define TANDEM_FLOAT_FIELD(f)                                                                                          \
  Field {                                                                                                              \
#f, [](const ModelConfig&                                                                                          \
               c) { return json::Json(static_cast<double>(c.f)); },                                                    \
                                                                 [](const json::Json& v,                               \
                                                                    ModelConfig* c) { return SetFloat(v, #f, &c->f); } \
  }

const Field kFields[] = {
    TANDEM_INT_FIELD(input_dim),
    TANDEM_INT_FIELD(hidden),
    TANDEM_INT_FIELD(output_dim),
    TANDEM_INT_FIELD(num_layers),
    TANDEM_INT_FIELD(num_dense_layers),
    TANDEM_INT_FIELD(dense_inter),
    TANDEM_INT_FIELD(num_experts),
    TANDEM_INT_FIELD(moe_inter),
    TANDEM_INT_FIELD(num_shared_experts),
    TANDEM_INT_FIELD(top_k),
    TANDEM_INT_FIELD(n_group),
    TANDEM_INT_FIELD(topk_group),
    {"score_func",
     [](const ModelConfig& c) { return json::Json(c.score_func == ScoreFunc::kSigmoid ? "sigmoid" : "softmax"); },
     [](const json::Json& v, ModelConfig* c) -> absl::Status {
       if (v == "sigmoid" || v == "softmax") {
         c->score_func = v == "sigmoid" ? ScoreFunc::kSigmoid : ScoreFunc::kSoftmax;
         return absl::OkStatus();
       }
       return absl::InvalidArgumentError(
           absl::StrCat("score_func: expected \"sigmoid\" or \"softmax\", got ", json::Excerpt(v.dump(), 40)));
     }},
    TANDEM_FLOAT_FIELD(route_scale),
    TANDEM_FLOAT_FIELD(bias_update_speed),
    TANDEM_FLOAT_FIELD(norm_eps),
    {"loss", [](const ModelConfig& c) { return json::Json(c.loss == LossKind::kMse ? "mse" : "cross_entropy"); },
     [](const json::Json& v, ModelConfig* c) -> absl::Status {
       if (v == "mse" || v == "cross_entropy") {
         c->loss = v == "mse" ? LossKind::kMse : LossKind::kCrossEntropy;
         return absl::OkStatus();
       }
       return absl::InvalidArgumentError(
           absl::StrCat("loss: expected \"mse\" or \"cross_entropy\", got ", json::Excerpt(v.dump(), 40)));
     }},
    // Files written before the JSON library changed hold seeds >= 2^63 as
    // negative numbers: the same 64 bits.
    {"seed", [](const ModelConfig& c) { return json::Json(c.seed); },
     [](const json::Json& v, ModelConfig* c) -> absl::Status {
       if (!v.is_number_integer()) {
         return absl::InvalidArgumentError(
             absl::StrCat("seed: expected an integer, got ", json::Excerpt(v.dump(), 40)));
       }
       c->seed = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
       return absl::OkStatus();
     }},
    TANDEM_FLOAT_FIELD(init_scale),
};

#undef TANDEM_INT_FIELD
#undef TANDEM_FLOAT_FIELD

json::Json ToJson(const ModelConfig& c) {
  json::Json v = json::Json::object();
  for (const Field& f : kFields) v[f.name] = f.get(c);
  return v;
}

}  // namespace

std::string ConfigToJson(const ModelConfig& c) {
  // Every value is finite or an integer: Dump cannot fail on a valid
  // config; a non-finite float field is written as the message says.
  absl::StatusOr<std::string> s = json::Dump(ToJson(c));
  return s.ok() ? *s : std::string(s.status().message());
}

absl::StatusOr<ModelConfig> ConfigFromJson(absl::string_view text) {
  TANDEM_ASSIGN_OR_RETURN(json::Json v, json::Parse(text));
  if (!v.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("config: expected an object, got ", json::Excerpt(text, 40)));
  }
  ModelConfig c;
  for (const Field& f : kFields) {
    if (!v.contains(f.name)) return absl::InvalidArgumentError(absl::StrCat(f.name, ": missing from the config"));
    TANDEM_RETURN_IF_ERROR(f.set(v[f.name], &c));
  }
  for (const auto& [key, value] : v.items()) {
    bool known = false;
    for (const Field& f : kFields) known = known || key == f.name;
    if (!known) return absl::InvalidArgumentError(absl::StrCat("config: unknown key '", json::Excerpt(key, 40), "'"));
  }
  return c;
}

std::string ConfigDifference(const ModelConfig& want, const ModelConfig& got) {
  for (const Field& f : kFields) {
    const json::Json a = f.get(want), b = f.get(got);
    if (a != b) return absl::StrCat(f.name, ": expected ", a.dump(), ", got ", b.dump());
  }
  return "";
}

}  // namespace tandem::model
