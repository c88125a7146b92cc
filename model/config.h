// -----------------------------------------------------------------------------
// File: config.h
// -----------------------------------------------------------------------------
//
// The configuration of the reference MoE model (model/README.md defines
// each field's meaning in the equations) and its validation.
//
// Example:
//   ModelConfig c;                // small defaults
//   c.num_experts = 16; c.top_k = 4; c.n_group = 4; c.topk_group = 2;
//   TANDEM_RETURN_IF_ERROR(ValidateConfig(c));
#ifndef TANDEM_MODEL_CONFIG_H_
#define TANDEM_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::model {

enum class ScoreFunc : uint8_t { kSigmoid, kSoftmax };
enum class LossKind : uint8_t { kMse, kCrossEntropy };

struct ModelConfig {
  // Sizes.
  int input_dim = 8;         // width of the model input (input projection)
  int hidden = 16;           // residual stream width
  int output_dim = 8;        // head width: MSE target width or vocabulary size
  int num_layers = 2;        // blocks
  int num_dense_layers = 0;  // the first blocks use a dense SwiGLU FFN
  int dense_inter = 32;      // inner width of dense FFNs

  // MoE (DeepSeek-V3 names in parentheses).
  int num_experts = 8;         // routed experts (n_routed_experts)
  int moe_inter = 8;           // expert inner width (moe_inter_dim)
  int num_shared_experts = 1;  // shared expert width = this * moe_inter
  int top_k = 2;               // experts per token (n_activated_experts)
  int n_group = 1;             // expert groups (n_expert_groups)
  int topk_group = 1;          // groups a token may use (n_limited_groups)
  ScoreFunc score_func = ScoreFunc::kSigmoid;
  float route_scale = 1.0f;          // multiplies the gate weights
  float bias_update_speed = 0.001f;  // aux-loss-free balancing gamma

  float norm_eps = 1e-6f;
  LossKind loss = LossKind::kMse;
  uint64_t seed = 0;
  float init_scale = 1.0f;  // weights ~ U(-s/sqrt(fan_in), s/sqrt(fan_in))
};

// ValidateConfig()
//
// kInvalidArgument naming the first bad field, e.g.
// "top_k: expected a value in [1, num_experts = 8], got 9" or
// "n_group: expected a divisor of num_experts = 8, got 3".
absl::Status ValidateConfig(const ModelConfig& c);

// Units of the model (model.h): the input projection, num_layers blocks and
// the head. Pipeline stages split these.
inline int NumUnits(const ModelConfig& c) { return c.num_layers + 2; }

// Number of MoE blocks (num_layers - num_dense_layers).
inline int NumMoeLayers(const ModelConfig& c) { return c.num_layers - c.num_dense_layers; }

// Parameter elements of a whole model with every expert (Model::Parameters();
// the router's bias is state, not a parameter). Computed in int64 from a
// valid config; used to size memory before anything is allocated.
int64_t NumParameters(const ModelConfig& c);

// ConfigToJson(), ConfigFromJson()
//
// The config as a compact JSON object (stored in checkpoint metadata; keys
// and enum strings in model/README.md), and back. ConfigFromJson refuses,
// naming the key, malformed JSON, a repeated, missing or unknown key and a
// value of the wrong type; it does not validate (ValidateConfig does).
std::string ConfigToJson(const ModelConfig& c);
absl::StatusOr<ModelConfig> ConfigFromJson(absl::string_view text);

// ConfigDifference()
//
// "" when the configs are equal, else the first differing field as
// "<field>: expected <want>, got <got>".
std::string ConfigDifference(const ModelConfig& want, const ModelConfig& got);

}  // namespace tandem::model

#endif  // TANDEM_MODEL_CONFIG_H_
