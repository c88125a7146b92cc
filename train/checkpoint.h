// -----------------------------------------------------------------------------
// File: checkpoint.h
// -----------------------------------------------------------------------------
//
// The trainer's checkpoints on disk: DIR/step-K/checkpoint.safetensors, one
// file holding the whole logical model in checkpoint order (every
// parameter, gate bias and optimizer slot; each routed expert once, by
// logical name: model/checkpoint.h), so it loads onto any mesh. Its
// metadata adds the trainer's step (the data position and the learning-rate
// schedule's) and the EPLB placement. A checkpoint is written into
// DIR/.step-K.tmp and renamed into place, so DIR/step-K is never half
// written; the last `keep` are kept.
//
// The stage copies of a pipeline each save their model (SaveCheckpointEp);
// MergeStages() takes every tensor from the stage that trains its unit.
#ifndef TANDEM_TRAIN_CHECKPOINT_H_
#define TANDEM_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "balance/placement.h"
#include "model/safetensors.h"

namespace tandem::train {

// UnitOfName()
//
// The unit (model.h) a checkpoint name belongs to: input_proj.* 0,
// layers.<i>.* i + 1, norm.* (the final norm) and head.* the last; optimizer slots
// (optim.<slot>.<name>) as their parameter. kInvalidArgument otherwise.
absl::StatusOr<int> UnitOfName(const std::string& name, int units);

// MergeStages()
//
// One file from per-stage files (stage s trains units [bounds[s],
// bounds[s + 1])): the tensors in stage 0's file order, each from its
// unit's stage; stage 0's metadata plus `metadata`. kInvalidArgument when
// the files hold other names.
absl::StatusOr<model::SafetensorsFile> MergeStages(const std::vector<model::SafetensorsFile>& stages,
                                                   const std::vector<int>& bounds,
                                                   const std::map<std::string, std::string>& metadata);

// Fingerprint()
//
// FNV-1a 64 over every tensor's name and raw bytes in file order, as 16
// hex digits: the same logical model gives the same fingerprint on any mesh.
std::string Fingerprint(const model::SafetensorsFile& file);

// WriteCheckpoint()
//
// Writes `file` as DIR/step-`step`/checkpoint.safetensors through a
// temporary directory and a rename, then removes all but the newest `keep`
// step directories (keep >= 1) and stale temporaries. Returns the step
// directory.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir, int64_t step, const model::SafetensorsFile& file,
                                            int keep);

// The checkpoint file of a step directory.
std::string CheckpointFile(const std::string& step_dir);

// LatestCheckpoint()
//
// The newest complete DIR/step-K, or kNotFound naming DIR.
absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir);

// CheckpointStep(), StepOfFile()
//
// The trainer step a checkpoint's step directory (or its read file, from
// `path`) holds. Errors of reading the file, or kInvalidArgument naming
// the key.
absl::StatusOr<int64_t> CheckpointStep(const std::string& step_dir);
absl::StatusOr<int64_t> StepOfFile(const model::SafetensorsFile& file, const std::string& path);

// Metadata keys the trainer adds.
inline constexpr char kStepKey[] = "tandem.trainer.step";
inline constexpr char kPlacementKey[] = "tandem.trainer.phy2log";
inline constexpr char kLoadsKey[] = "tandem.trainer.load_window";

// LoadsMetadata(), LoadsFromMetadata()
//
// The load recorder's window steps (each [layers][experts], summed over the
// world) as "steps layers experts v v v ..." and back. kInvalidArgument
// naming the problem (other sizes than `layers` x `experts`, counts < 0).
std::string LoadsMetadata(const std::vector<std::vector<int64_t>>& steps, int layers, int experts);
absl::StatusOr<std::vector<std::vector<int64_t>>> LoadsFromMetadata(const std::string& text, int layers, int experts);

// PlacementMetadata(), PlacementFromMetadata()
//
// A placement's phy2log as "layers replicas v v v ..." and back (for a
// model of `layers` MoE layers and `experts` experts). kInvalidArgument
// naming the problem.
std::string PlacementMetadata(const balance::Placement& p);
absl::StatusOr<balance::Placement> PlacementFromMetadata(const std::string& text, int layers, int experts);

}  // namespace tandem::train

#endif  // TANDEM_TRAIN_CHECKPOINT_H_
