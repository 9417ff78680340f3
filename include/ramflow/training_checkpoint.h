#pragma once
// Training checkpoints: everything a run needs to continue bit for bit after a stop or a crash.
// A training checkpoint is a ramflow model checkpoint (checkpoint.h) whose models are the policy,
// the reference (absent for a LoRA policy: its base is the reference), the EMA old policy ("old")
// and the evaluation EMA ("ema") where the trainer has them, plus the trainer's state
// (TrainerState): tensors "optimizer.*" and "method.*", and the metadata field "trainer". `ramflow
// sample` and `eval` read it like any checkpoint.
//
// A run numbers its checkpoints: RUN/checkpoints/step-<k, 8 digits>.safetensors. Each is written
// atomically (a temporary file, fsync, rename, fsync of the directory); then RUN/checkpoints/latest
// (one line: the newest file's name) is replaced the same way; only then are the oldest beyond the
// last K removed. A kill at any moment leaves `latest` naming a complete file, or (killed between
// the two renames) an older complete one.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramflow/trainer.h"

namespace ramflow {

/// The models of `trainer` a checkpoint saves, by name: "policy"; "ref" unless the policy is a LoRA
/// model (its base, adapters off, is the reference); "old" (the EMA old policy) when `with_old` and
/// the trainer has one; "ema" (the evaluation EMA) when it has one. A training checkpoint saves
/// them all; the model checkpoint at the end of a run leaves out "old".
std::vector<std::pair<std::string, const VelocityFieldImpl*>> checkpoint_models(Trainer& trainer,
                                                                                bool with_old);
/// Writes `trainer`'s full state to `path`; `meta` fields (config, method options) are added.
void save_training_checkpoint(const std::string& path, Trainer& trainer,
                              const nlohmann::json& meta = {});
/// Restores a training checkpoint into `trainer`, built with the same configuration; returns the
/// checkpoint's ramflow metadata. Throws InputError naming the path if it is not one, or does not
/// fit.
nlohmann::json load_training_checkpoint(const std::string& path, Trainer& trainer);
/// The same from a file already read (`path` names it in errors).
nlohmann::json load_training_checkpoint(const SafetensorsFile& file, const std::string& path,
                                        Trainer& trainer);

/// The numbered checkpoints of one run, in `dir` (RUN/checkpoints).
class CheckpointSeries {
 public:
  /// `keep`: how many of the newest to keep (0 = all). Creates `dir` and removes temporary files a
  /// killed write left, unless `writes` is false (a rank other than 0 of a data-parallel run, which
  /// only reads the series: docs/distributed.md).
  CheckpointSeries(std::string dir, int64_t keep, bool writes = true);
  /// dir/step-<k>.safetensors.
  std::string path(int64_t step) const;
  /// Saves step `step` with `save(path)` (which must write atomically), points `latest` at it and
  /// removes the oldest beyond `keep`. Returns the path.
  std::string write(int64_t step, const std::function<void(const std::string&)>& save);
  /// The newest checkpoint: the one `latest` names if it exists, else the highest step on disk; ""
  /// if there is none.
  std::string latest() const;
  /// The steps on disk, ascending.
  std::vector<int64_t> steps() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int64_t keep_;
};

}  // namespace ramflow
