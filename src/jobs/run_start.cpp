// Opening a run directory: a fresh run, a resumed one, and the models of checkpoints (see
// src/jobs/run_start.h).
#include "jobs/run_start.h"

#include <filesystem>

#include <torch/torch.h>

#include "jobs/base_model.h"
#include "jobs/resolve.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/lora.h"
#include "ramflow/strings.h"
#include "ramflow/training_checkpoint.h"

namespace fs = std::filesystem;

namespace ramflow::jobs {

namespace {
// A --base of another task (the fashion UNet on the ring) is refused before the run directory
// exists: one forward pass on a sample of the task's shape, at t = 0.5, with its conditions.
void check_base_takes(VelocityFieldImpl& base, const Task& task, torch::Device device,
                      const std::string& path) {
  std::vector<int64_t> shape = {1};
  for (int64_t s : task.sample_shape()) shape.push_back(s);
  const Condition cond =
      task.condition_count() > 0 ? task.evaluation_conditions(1).to(device) : Condition();
  try {
    torch::NoGradGuard no_grad;
    base.forward(torch::zeros(shape, torch::TensorOptions().device(device)),
                 torch::full({1}, 0.5, torch::TensorOptions().device(device)), cond);
  } catch (const c10::Error& e) {
    throw ConfigError("--base " + path + ": the model does not take task '" + task.name() +
                      "' samples " + shape_text(shape) + " (" + e.what_without_backtrace() + ")");
  }
}
}  // namespace

RunStart start_run(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  RunDir::check(cfg.text("out"), cfg.boolean("overwrite"));
  VelocityFieldPtr base = cfg.is_set("base") ? base_model(cfg, task, device, io) : nullptr;
  if (base && !is_diffusers_base(cfg)) check_base_takes(*base, task, device, cfg.text("base"));
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values(), cfg.given());
  if (!base) base = base_model(cfg, task, device, io);  // from the cache, or pretrained now
  return {std::move(run), std::move(base), "", nullptr};
}

RunStart follow_run(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  RunDir run = RunDir::follow(cfg.text("out"));
  if (cfg.is_set("resume")) {
    const CheckpointSeries series(run.file("checkpoints"), cfg.integer("keep_checkpoints"),
                                  /*writes=*/false);
    const std::string latest = series.latest();
    if (latest.empty())
      throw InputError(run.path() +
                       ": no training checkpoint to resume from on this machine "
                       "(a resumed run of several machines needs a shared folder)");
    auto file = std::make_shared<const SafetensorsFile>(load_safetensors(latest));
    const nlohmann::json meta = read_checkpoint_meta(*file, latest);
    VelocityFieldPtr base = load_model(latest, meta, reference_name(meta), file.get());
    base->to(device);
    base->eval();
    return {std::move(run), std::move(base), latest, std::move(file)};
  }
  VelocityFieldPtr base = cfg.is_set("base") ? base_model(cfg, task, device, io)
                                             : start_pretraining(cfg, task, device).model;
  base->eval();
  return {std::move(run), std::move(base), "", nullptr};
}

void share_base(const Config& cfg, RunStart& start, Communicator& comm) {
  if (comm.size() == 1 || cfg.is_set("resume") || cfg.is_set("base")) return;
  if (comm.leader())
    comm.announce("base");
  else
    comm.await("base", 0);  // rank 0 may be pretraining it: longer than a collective waits
  broadcast_module(comm, *start.base);
}

Config resume_config(const Config& given, const std::set<std::string>& may_change) {
  const std::string dir = given.text("resume");
  if (given.is_set("out") && given.text("out") != dir)
    throw ConfigError("--resume continues " + dir + " in place: drop --out");
  if (given.boolean("overwrite")) throw ConfigError("--resume and --overwrite exclude each other");
  const std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::is_directory(dir)) throw InputError(dir + ": no such run directory (--resume)");
  if (!fs::exists(path)) throw InputError(dir + ": not a ramflow run directory (no config.json)");
  Config cfg = Config::from_json(given.table(), read_json_file(path), path);
  // The keys the first invocation set: only they count as given, so that method and task presets
  // apply to the others as they did then.
  const std::string given_path = (fs::path(dir) / "config_given.json").string();
  if (!fs::exists(given_path)) throw InputError(dir + ": cannot be resumed (no config_given.json)");
  std::set<std::string> keys;
  const nlohmann::json first = read_json_file(given_path);
  if (!first.is_object()) throw InputError(given_path + ": expected a JSON object");
  for (const auto& [name, value] : first.items()) {
    const std::string* now = given.table().renamed_to(name);  // a run of an earlier version
    const std::string key = now ? *now : name;
    if (!given.table().find(key)) throw InputError(given_path + ": unknown key '" + key + "'");
    keys.insert(key);
  }
  std::vector<std::string> flags;
  for (const auto& k : may_change) flags.push_back(given.table().find(k)->flag());
  const std::string allowed = join(flags);
  for (const auto& p : given.table().params()) {
    if (!given.is_explicit(p.key) || p.key == "resume" || p.key == "out" || p.key == "overwrite")
      continue;
    if (given.raw(p.key) == cfg.raw(p.key)) continue;
    if (!may_change.count(p.key))
      throw ConfigError("--resume: " + p.flag() + " " + given.raw(p.key).dump() +
                        " differs from the run's " + cfg.raw(p.key).dump() +
                        "; a resumed run keeps its configuration (only " + allowed +
                        " may change)");
    cfg.set(p.key, given.raw(p.key));
    keys.insert(p.key);
  }
  cfg.set("out", dir);
  cfg.set("resume", dir);
  keys.insert("out");
  cfg.set_explicit_keys(keys);
  return cfg;
}

std::optional<nlohmann::json> finished_summary(const Config& cfg) {
  const fs::path dir = cfg.text("out");
  const int64_t steps = cfg.integer("steps");
  auto refuse = [&](int64_t reached, const std::string& how) {
    throw ConfigError("--steps " + std::to_string(steps) + ": " + dir.string() + " " + how +
                      " step " + std::to_string(reached) +
                      "; a resumed run goes on from there (--steps " + std::to_string(reached) +
                      " or more)");
  };
  // summary.json is written last: its presence marks a run that finished at its "steps".
  if (fs::exists(dir / "summary.json")) {
    nlohmann::json summary;
    try {
      summary = nlohmann::json::parse(read_file((dir / "summary.json").string()));
    } catch (const nlohmann::json::exception& e) {
      throw InputError((dir / "summary.json").string() + ": not JSON (" + e.what() + ")");
    }
    const int64_t done = summary.value("steps", int64_t{0});
    if (steps < done) refuse(done, "finished at");
    if (steps == done) return summary;
    return std::nullopt;
  }
  const CheckpointSeries series((dir / "checkpoints").string(), cfg.integer("keep_checkpoints"),
                                /*writes=*/false);  // read only: every rank runs this
  if (const std::string latest = series.latest(); !latest.empty()) {
    const int64_t at = read_checkpoint_meta(latest).value("step", int64_t{0});
    if (steps < at) refuse(at, "has a checkpoint at");
  }
  return std::nullopt;
}

RunStart reopen_run(const Config& cfg, torch::Device device, JobIO io,
                    const std::string& base_checkpoint) {
  RunDir run = RunDir::open(cfg.text("out"));
  if (!base_checkpoint.empty()) {
    VelocityFieldPtr base = load_checkpoint_model(base_checkpoint, "base");
    base->to(device);
    base->eval();
    run.write_config(cfg.values(), cfg.given());
    io.log << "resuming " << run.path() << "\n";
    return {std::move(run), std::move(base), "", nullptr};
  }
  const CheckpointSeries series(run.file("checkpoints"), cfg.integer("keep_checkpoints"));
  const std::string latest = series.latest();
  if (latest.empty())
    throw InputError(run.path() +
                     ": no training checkpoint to resume from (checkpoints/step-*.safetensors)");
  // Read once: the base (the reference stored in it) now, the trainer's state when the trainer
  // exists.
  auto file = std::make_shared<const SafetensorsFile>(load_safetensors(latest));
  const nlohmann::json meta = read_checkpoint_meta(*file, latest);
  if (!meta.contains("trainer"))
    throw InputError(latest + ": not a training checkpoint (no trainer state)");
  VelocityFieldPtr base = load_model(latest, meta, reference_name(meta), file.get());
  base->to(device);
  base->eval();
  run.write_config(cfg.values(), cfg.given());
  io.log << "resuming " << run.path() << " from " << latest << " (step "
         << meta.value("step", int64_t{0}) << ")\n";
  return {std::move(run), std::move(base), latest, std::move(file)};
}

namespace {
// A LoRA policy's reference is its base with adapters off: "ref" names it when no "ref" is stored.
bool ref_is_lora_base(const nlohmann::json& meta) {
  const bool has_models = meta.contains("models") && meta["models"].is_object();
  return has_models && !meta["models"].contains("ref") && meta["models"].contains("policy") &&
         meta["models"]["policy"].value("type", std::string()) == "lora";
}
}  // namespace

std::string reference_name(const nlohmann::json& meta) {
  return ref_is_lora_base(meta) || meta["models"].contains("ref") ? "ref" : "base";
}

VelocityFieldPtr load_model(const std::string& path, const nlohmann::json& meta,
                            const std::string& name, const SafetensorsFile* file) {
  auto load = [&](const std::string& model) {
    return file ? load_checkpoint_model(*file, path, model) : load_checkpoint_model(path, model);
  };
  if (name == "ref" && ref_is_lora_base(meta)) return as_lora(*load("policy"))->base_ptr();
  return load(name);
}

std::string pick_model(const nlohmann::json& meta, const nlohmann::json& requested,
                       const std::string& path) {
  const bool has_models = meta.contains("models") && meta["models"].is_object();
  if (requested.is_string()) {
    const auto name = requested.get<std::string>();
    if (name == "ref" && ref_is_lora_base(meta)) return name;
    if (!has_models || !meta["models"].contains(name))
      throw InputError(path + ": checkpoint has no model '" + name + "'" +
                       checkpoint_models_text(meta));
    return name;
  }
  for (const char* name : {"policy", "base"})
    if (has_models && meta["models"].contains(name)) return name;
  throw InputError(path + ": checkpoint has neither a 'policy' nor a 'base' model" +
                   checkpoint_models_text(meta));
}

}  // namespace ramflow::jobs
