#include "train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/fnv.h"
#include "base/status_macros.h"

namespace tandem::train {
namespace {

namespace fs = std::filesystem;

constexpr char kFileName[] = "checkpoint.safetensors";

// The K of a directory named "step-K", or -1.
int64_t StepOf(const std::string& name) {
  int64_t k = -1;
  if (!absl::StartsWith(name, "step-") || !absl::SimpleAtoi(name.substr(5), &k) || k < 0) return -1;
  return k;
}

}  // namespace

absl::StatusOr<int> UnitOfName(const std::string& name, int units) {
  absl::string_view n = name;
  if (absl::ConsumePrefix(&n, "optim.")) {
    const size_t dot = n.find('.');
    if (dot == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint: tensor '", name, "': no parameter after optim.<slot>"));
    }
    n.remove_prefix(dot + 1);
  }
  if (absl::StartsWith(n, "input_proj.")) return 0;
  if (absl::StartsWith(n, "norm.") || absl::StartsWith(n, "head.")) return units - 1;
  int layer = -1;
  if (absl::ConsumePrefix(&n, "layers.")) {
    const size_t dot = n.find('.');
    if (absl::SimpleAtoi(n.substr(0, dot), &layer) && layer >= 0 && layer + 2 < units) return layer + 1;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("checkpoint: tensor '", name, "': expected a name of one of ", units, " units"));
}

absl::StatusOr<model::SafetensorsFile> MergeStages(const std::vector<model::SafetensorsFile>& stages,
                                                   const std::vector<int>& bounds,
                                                   const std::map<std::string, std::string>& metadata) {
  if (stages.empty() || bounds.size() != stages.size() + 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("checkpoint: %d stage files for %d bounds", stages.size(), bounds.size()));
  }
  const int units = bounds.back();
  model::SafetensorsFile out;
  out.metadata = stages[0].metadata;
  for (const auto& [k, v] : metadata) out.metadata[k] = v;
  for (const auto& [name, tensor] : stages[0].tensors) {
    TANDEM_ASSIGN_OR_RETURN(const int unit, UnitOfName(name, units));
    const int stage = static_cast<int>(std::upper_bound(bounds.begin(), bounds.end(), unit) - bounds.begin()) - 1;
    const model::Tensor* t = stages[stage].Find(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint: stage ", stage, "'s file lacks '", name, "'"));
    }
    out.tensors.emplace_back(name, *t);
  }
  return out;
}

std::string Fingerprint(const model::SafetensorsFile& file) {
  uint64_t h = kFnvOffset;
  for (const auto& [name, t] : file.tensors) {
    h = Fnv1a64(name.data(), name.size(), h);
    h = Fnv1a64(t.raw(), t.bytes(), h);
  }
  return absl::StrFormat("%016x", h);
}

std::string CheckpointFile(const std::string& step_dir) { return absl::StrCat(step_dir, "/", kFileName); }

absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir, int64_t step, const model::SafetensorsFile& file,
                                            int keep) {
  if (keep < 1) return absl::InvalidArgumentError(absl::StrCat("checkpoint: keep: expected >= 1, got ", keep));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("checkpoint: cannot create ", dir, ": ", ec.message()));
  const std::string tmp = absl::StrCat(dir, "/.step-", step, ".tmp"), final_dir = absl::StrCat(dir, "/step-", step);
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("checkpoint: cannot create ", tmp, ": ", ec.message()));
  TANDEM_RETURN_IF_ERROR(model::WriteSafetensors(CheckpointFile(tmp), file.tensors, file.metadata));
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("checkpoint: cannot rename ", tmp, ": ", ec.message()));
  // Keep the newest `keep`; drop other steps' temporaries (a crashed writer's).
  std::vector<std::pair<int64_t, fs::path>> steps;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (StepOf(name) >= 0) steps.emplace_back(StepOf(name), e.path());
    if (absl::StartsWith(name, ".step-") && absl::EndsWith(name, ".tmp")) fs::remove_all(e.path(), ec);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + keep < steps.size(); ++i) fs::remove_all(steps[i].second, ec);
  return final_dir;
}

absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir) {
  std::error_code ec;
  int64_t best = -1;
  std::string path;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const int64_t k = StepOf(e.path().filename().string());
    if (k > best && fs::exists(CheckpointFile(e.path().string()), ec)) {
      best = k;
      path = e.path().string();
    }
  }
  if (best < 0) return absl::NotFoundError(absl::StrCat("checkpoint: no DIR/step-K/", kFileName, " in ", dir));
  return path;
}

absl::StatusOr<int64_t> CheckpointStep(const std::string& step_dir) {
  const std::string path = CheckpointFile(step_dir);
  TANDEM_ASSIGN_OR_RETURN(model::SafetensorsFile file, model::ReadSafetensors(path));
  return StepOfFile(file, path);
}

absl::StatusOr<int64_t> StepOfFile(const model::SafetensorsFile& file, const std::string& path) {
  auto it = file.metadata.find(kStepKey);
  int64_t n = -1;
  if (it == file.metadata.end() || !absl::SimpleAtoi(it->second, &n) || n < 0 || n > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", kStepKey, ": expected a step >= 0",
                                                   it == file.metadata.end() ? " (not a trainer checkpoint)" : ""));
  }
  return n;
}

std::string LoadsMetadata(const std::vector<std::vector<int64_t>>& steps, int layers, int experts) {
  std::string out = absl::StrCat(steps.size(), " ", layers, " ", experts);
  for (const std::vector<int64_t>& step : steps) {
    for (int64_t v : step) absl::StrAppend(&out, " ", v);
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> LoadsFromMetadata(const std::string& text, int layers, int experts) {
  std::vector<absl::string_view> items = absl::StrSplit(text, ' ', absl::SkipEmpty());
  int64_t steps = -1, l = -1, e = -1;
  const int64_t cells = int64_t{layers} * experts;
  if (items.size() < 3 || !absl::SimpleAtoi(items[0], &steps) || !absl::SimpleAtoi(items[1], &l) ||
      !absl::SimpleAtoi(items[2], &e) || l != layers || e != experts || steps < 0 ||
      static_cast<int64_t>(items.size()) != 3 + steps * cells) {
    return absl::InvalidArgumentError(absl::StrFormat("checkpoint: %s: expected steps of %d x %d counts, got '%s'",
                                                      kLoadsKey, layers, experts, text.substr(0, 40)));
  }
  std::vector<std::vector<int64_t>> out(steps, std::vector<int64_t>(cells));
  for (int64_t i = 0; i < steps * cells; ++i) {
    int64_t v = -1;
    if (!absl::SimpleAtoi(items[3 + i], &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("checkpoint: %s: count %d: expected >= 0, got '%s'", kLoadsKey, i, items[3 + i]));
    }
    out[i / cells][i % cells] = v;
  }
  return out;
}

std::string PlacementMetadata(const balance::Placement& p) {
  // Each slot's expert and replica rank (log2phy's order).
  std::string out = absl::StrCat(p.num_layers, " ", p.num_replicas);
  for (int l = 0; l < p.num_layers; ++l) {
    for (int s = 0; s < p.num_replicas; ++s) {
      const int64_t e = p.expert_of(l, s);
      const int64_t* row = &p.log2phy[(static_cast<int64_t>(l) * p.num_experts + e) * p.max_count];
      const int64_t rank = std::find(row, row + p.max_count, s) - row;
      absl::StrAppend(&out, " ", e, ":", rank);
    }
  }
  return out;
}

absl::StatusOr<balance::Placement> PlacementFromMetadata(const std::string& text, int layers, int experts) {
  std::vector<absl::string_view> items = absl::StrSplit(text, ' ', absl::SkipEmpty());
  int file_layers = 0, replicas = 0;
  if (items.size() < 2 || !absl::SimpleAtoi(items[0], &file_layers) || !absl::SimpleAtoi(items[1], &replicas) ||
      file_layers != layers || replicas < 1 || replicas > (1 << 20) ||
      items.size() != 2 + static_cast<size_t>(layers) * replicas) {
    return absl::InvalidArgumentError(absl::StrFormat("checkpoint: %s: expected %d layers of slots, got '%s'",
                                                      kPlacementKey, layers, text.substr(0, 40)));
  }
  std::vector<int64_t> phy2log;
  std::vector<int32_t> rank;
  for (size_t i = 2; i < items.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> er = absl::StrSplit(items[i], ':');
    int64_t e = 0;
    int32_t r = 0;
    if (!absl::SimpleAtoi(er.first, &e) || !absl::SimpleAtoi(er.second, &r)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("checkpoint: %s: slot %d: expected EXPERT:RANK, got '%s'", kPlacementKey, i - 2, items[i]));
    }
    phy2log.push_back(e);
    rank.push_back(r);
  }
  return balance::MakePlacement(layers, experts, replicas, std::move(phy2log), rank);
}

}  // namespace tandem::train
