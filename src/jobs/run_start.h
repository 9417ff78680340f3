#pragma once
// Opening a run directory: a fresh run (inputs checked before the directory exists), a resumed one
// (its own configuration, the changed keys checked), and the models stored in checkpoints. Internal
// to the library.
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/config.h"
#include "ramflow/jobs.h"
#include "ramflow/run_dir.h"
#include "ramflow/safetensors.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow::jobs {

/// The start of a training job's run: the run directory (created, config.json written) and the base
/// model. Every input is opened and checked before the directory is created (an existing --out, a
/// missing or malformed --base leave nothing behind); pretraining, which is compute, not input,
/// runs after.
struct RunStart {
  RunDir run;
  VelocityFieldPtr base;
  std::string resume_from;  // the training checkpoint to restore (resumed runs), else empty
  std::shared_ptr<const SafetensorsFile> resume_file;  // its contents, read once
};
RunStart start_run(const Config& cfg, const Task& task, torch::Device device, JobIO io);

/// The start of a run on a rank other than 0 of a data-parallel run (docs/distributed.md): the
/// run directory as RunDir::follow sees it, and the base model: loaded from --base (every machine
/// has the file), else a model of the configured architecture whose weights rank 0 then broadcasts
/// (share_base); a resumed run reads rank 0's training checkpoint (a filesystem the ranks share).
RunStart follow_run(const Config& cfg, const Task& task, torch::Device device, JobIO io);
/// After start_run (rank 0) or follow_run (the others), on every rank: the base model of a fresh
/// run without --base (pretrained or cached by rank 0, however long that took) becomes rank 0's on
/// every rank.
void share_base(const Config& cfg, RunStart& start, Communicator& comm);

/// The configuration of `--resume RUN`: RUN/config.json, with the keys of `given` that were set
/// explicitly and may change (`may_change`, e.g. steps) applied; any other key set to a different
/// value is a ConfigError naming it, its value and the run's. `out` becomes RUN.
Config resume_config(const Config& given, const std::set<std::string>& may_change);
/// Where `--resume RUN` stands against the resolved `steps` (the run's own or a changed value),
/// from summary.json and the checkpoints' headers, before anything is written: nullopt when there
/// is training left; RUN's summary when RUN finished at exactly `steps` (nothing to do). `steps`
/// below the step RUN reached (its summary's, or its latest training checkpoint's) is a
/// ConfigError: a run never goes back.
std::optional<nlohmann::json> finished_summary(const Config& cfg);
/// The start of a resumed run: RUN opened as it is, config.json rewritten (the changed keys), and
/// the base model taken from `base_checkpoint` (model "base") if given, else from RUN's latest
/// training checkpoint (its reference): no cache or pretraining involved. InputError if there is no
/// such checkpoint.
RunStart reopen_run(const Config& cfg, torch::Device device, JobIO io,
                    const std::string& base_checkpoint = "");

/// The model to use from a checkpoint: `requested` if it is a string, else "policy", else "base";
/// "ref" also names the base of a LoRA policy (adapters off) when the checkpoint stores no "ref".
std::string pick_model(const nlohmann::json& meta, const nlohmann::json& requested,
                       const std::string& path);
/// The reference model of a checkpoint: "ref" when it stores one or holds a LoRA policy, else
/// "base".
std::string reference_name(const nlohmann::json& meta);
/// Loads the model `name` chosen by pick_model (`meta`: the checkpoint's metadata); from `file` if
/// given (the checkpoint already read), else from `path`.
VelocityFieldPtr load_model(const std::string& path, const nlohmann::json& meta,
                            const std::string& name, const SafetensorsFile* file = nullptr);

}  // namespace ramflow::jobs
