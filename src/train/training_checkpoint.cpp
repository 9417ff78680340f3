// Training checkpoints and a run's numbered series of them (see
// include/ramflow/training_checkpoint.h).
#include "ramflow/training_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/lora.h"

namespace fs = std::filesystem;

namespace ramflow {

std::vector<std::pair<std::string, const VelocityFieldImpl*>> checkpoint_models(Trainer& trainer,
                                                                                bool with_old) {
  std::vector<std::pair<std::string, const VelocityFieldImpl*>> models = {
      {"policy", &trainer.policy()}};
  // A LoRA policy holds its base, which is the reference (adapters off): no second copy.
  if (!as_lora(trainer.policy())) models.emplace_back("ref", &trainer.ref());
  if (with_old && trainer.old()) models.emplace_back("old", trainer.old());
  if (trainer.has_eval_ema()) models.emplace_back("ema", &trainer.eval_model());
  return models;
}

void save_training_checkpoint(const std::string& path, Trainer& trainer,
                              const nlohmann::json& meta) {
  TrainerState state = trainer.state();
  const auto models = checkpoint_models(trainer, /*with_old=*/true);
  nlohmann::json info = meta.is_object() ? meta : nlohmann::json::object();
  info["trainer"] = state.meta;
  info["step"] = trainer.steps_done();
  save_checkpoint(path, models, info, state.tensors);
}

nlohmann::json load_training_checkpoint(const std::string& path, Trainer& trainer) {
  return load_training_checkpoint(load_safetensors(path), path, trainer);
}

nlohmann::json load_training_checkpoint(const SafetensorsFile& file, const std::string& path,
                                        Trainer& trainer) {
  const nlohmann::json meta = read_checkpoint_meta(file, path);
  if (!meta.is_object() || !meta.contains("trainer"))
    throw InputError(
        path +
        ": a model checkpoint without training state (written at the end of a run, or by "
        "pretrain); resume needs a training checkpoint (checkpoints/step-*.safetensors)");
  trainer.load_state(checkpoint_tensors(file, meta, path), meta["trainer"], path);
  return meta;
}

namespace {
constexpr const char* kPrefix = "step-";
constexpr const char* kSuffix = ".safetensors";

// The step of "step-<k>.safetensors", or -1 for any other name.
int64_t step_of(const std::string& name) {
  const std::string prefix = kPrefix, suffix = kSuffix;
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 15 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
    return -1;
  return std::stoll(digits);
}
}  // namespace

CheckpointSeries::CheckpointSeries(std::string dir, int64_t keep, bool writes)
    : dir_(std::move(dir)), keep_(keep) {
  if (keep < 0) throw ConfigError("--keep-checkpoints must be >= 0");
  if (!writes) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw IOError(dir_ + ": cannot create (" + ec.message() + ")");
  // Temporary files of writes a kill interrupted (write_file_atomic names them <file>.tmp-<pid>).
  for (const auto& entry : fs::directory_iterator(dir_, ec))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos)
      fs::remove(entry.path(), ec);
}

std::string CheckpointSeries::path(int64_t step) const {
  std::ostringstream name;
  name << kPrefix << std::setw(8) << std::setfill('0') << step << kSuffix;
  return (fs::path(dir_) / name.str()).string();
}

std::vector<int64_t> CheckpointSeries::steps() const {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const int64_t k = step_of(entry.path().filename().string());
    if (k >= 0) out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string CheckpointSeries::write(int64_t step,
                                    const std::function<void(const std::string&)>& save) {
  const std::string file = path(step);
  save(file);
  write_file_atomic((fs::path(dir_) / "latest").string(),
                    fs::path(file).filename().string() + "\n");
  if (keep_ > 0) {
    auto all = steps();
    std::error_code ec;
    for (size_t i = 0; i + static_cast<size_t>(keep_) < all.size(); ++i)
      if (all[i] != step) fs::remove(path(all[i]), ec);
  }
  return file;
}

std::string CheckpointSeries::latest() const {
  std::error_code ec;
  const fs::path pointer = fs::path(dir_) / "latest";
  if (fs::exists(pointer, ec)) {
    std::string name;
    try {
      name = read_file(pointer.string());
    } catch (const IOError&) {
    }
    name.erase(name.find_last_not_of(" \n\r\t") + 1);
    if (step_of(name) >= 0 && fs::exists(fs::path(dir_) / name, ec))
      return (fs::path(dir_) / name).string();
  }
  const auto all = steps();
  return all.empty() ? std::string() : path(all.back());
}

}  // namespace ramflow
