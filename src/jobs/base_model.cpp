// The base model of a run: given, cached or pretrained now (see src/jobs/base_model.h).
#include "jobs/base_model.h"

#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "jobs/report.h"
#include "jobs/resolve.h"
#include "ramflow/assets.h"
#include "ramflow/checkpoint.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/progress.h"
#include "ramflow/strings.h"

namespace fs = std::filesystem;

namespace ramflow::jobs {
namespace {

std::string cache_dir(const Config& cfg) {
  if (cfg.is_set("cache_dir")) return cfg.text("cache_dir");
  if (const char* d = std::getenv("RAMFLOW_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/ramflow";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/ramflow";
  return ".ramflow-cache";
}

// p(t) of pretraining's flow-matching loss (logit-normal: t = sigmoid(z), z ~ N(0, 1), SD3's).
TimeDistribution pretrain_time(const Config& cfg) {
  TimeDistribution time;
  time.kind = cfg.text("pretrain_time_dist");
  return time;
}

}  // namespace

VelocityFieldPtr base_model(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  if (const auto pipeline = pipeline_from(cfg)) {
    // A diffusers pipeline's transformer, in the dtype asked for (probed on the device first).
    const torch::Dtype dtype = dtype_from(cfg);
    check_dtype_computes(dtype, device, "--dtype " + dtype_name(dtype));
    io.log << "base model: " << pipeline->dir << " (SD3 transformer, "
           << pipeline->transformer.num_layers() << " blocks, width " << pipeline->transformer.dim()
           << ", " << dtype_name(dtype) << ")\n";
    auto model = make_velocity_field(model_spec_from(cfg, task));
    model->to(device);
    model->eval();
    return model;
  }
  if (cfg.is_set("base")) {
    // A pretrain checkpoint holds "base"; a finetune checkpoint's "policy" can serve as a base too.
    const std::string path = resolve_model_file(cfg.text("base"));
    const auto meta = read_checkpoint_meta(path);
    const bool has_base = meta.contains("models") && meta["models"].contains("base");
    auto model = load_checkpoint_model(path, has_base ? "base" : "policy");
    int64_t n_params = 0;
    for (const auto& w : model->parameters()) n_params += w.numel();
    io.log << "base model: " << path << " (model '" << (has_base ? "base" : "policy") << "', "
           << n_params << " parameters)\n";
    model->to(device);
    model->eval();
    return model;
  }
  // The cache key covers everything that determines the pretrained weights.
  nlohmann::json key = {
      {"format", 4},  // bump when a model's parameter layout or initialisation changes
      {"task", task.spec()},
      {"model", model_spec_from(cfg, task)},
      {"steps", cfg.integer("pretrain_steps")},
      {"batch", cfg.integer("pretrain_batch")},
      {"lr", cfg.number("pretrain_lr")},
      {"ema", cfg.number("pretrain_ema")},
      {"label_dropout", cfg.number("pretrain_label_dropout")},
      {"grad_clip", cfg.number("pretrain_grad_clip")},
      {"seed", cfg.integer("pretrain_seed")}};
  // Keys of the default p(t) stay as they were, so earlier caches remain valid.
  if (cfg.text("pretrain_time_dist") != "uniform")
    key["time_dist"] = cfg.text("pretrain_time_dist");
  std::ostringstream name;
  name << "base-" << task.name() << "-" << std::hex << std::setw(16) << std::setfill('0')
       << fnv1a(key.dump()) << ".safetensors";
  const fs::path path = fs::path(cache_dir(cfg)) / name.str();
  if (fs::exists(path)) {
    try {
      nlohmann::json meta;
      auto model = load_checkpoint_model(path.string(), "base", &meta);
      if (meta.value("pretrain", nlohmann::json()) == key) {
        io.log << "base model: cached " << path.string() << "\n";
        model->to(device);
        model->eval();
        return model;
      }
    } catch (const IOError& e) {
      io.log << "base model: ignoring unreadable cache entry (" << e.what() << ")\n";
    }
  }
  io.log << "base model: pretraining on task '" << task.name() << "' (cached afterwards)\n";
  BasePretraining p = start_pretraining(cfg, task, device);
  const int64_t steps = cfg.integer("pretrain_steps");
  Progress bar("pretrain", steps, io.log, io.tty);
  double last_loss = 0;
  while (p.pretrainer->steps_done() < steps) {
    last_loss = p.pretrainer->step().loss;
    bar.update(p.pretrainer->steps_done(), "loss " + fixed(last_loss));
  }
  bar.finish("loss " + fixed(last_loss));
  p.pretrainer->finish();
  const VelocityFieldPtr& model = p.model;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) throw IOError(path.parent_path().string() + ": cannot create the cache directory");
  save_checkpoint(path.string(), {{"base", model.get()}},
                  {{"pretrain", key}, {"final_loss", last_loss}});
  return model;
}

BasePretraining start_pretraining(const Config& cfg, const Task& task, torch::Device device) {
  auto model = make_velocity_field(model_spec_from(cfg, task),
                                   static_cast<uint64_t>(cfg.integer("pretrain_seed")));
  model->to(device);
  DataSampler data = [&task](int64_t n, Rng& rng, Condition* cond) {
    return task.sample_data(n, rng, {}, cond);
  };
  auto pretrainer =
      std::make_unique<Pretrainer>(*model, data,
                                   PretrainOptions()
                                       .steps(cfg.integer("pretrain_steps"))
                                       .batch(cfg.integer("pretrain_batch"))
                                       .lr(cfg.number("pretrain_lr"))
                                       .ema(cfg.number("pretrain_ema"))
                                       .label_dropout(cfg.number("pretrain_label_dropout"))
                                       .null_condition(task.null_condition().to(device))
                                       .grad_clip(cfg.number("pretrain_grad_clip"))
                                       .time(pretrain_time(cfg))
                                       .seed(static_cast<uint64_t>(cfg.integer("pretrain_seed"))));
  return {model, std::move(pretrainer)};
}

}  // namespace ramflow::jobs
