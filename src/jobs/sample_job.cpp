// `ramflow sample`: endpoints from a checkpoint, written as CSV (one sample per row) or safetensors
// (a tensor "samples" [n, ...]), chosen by the output's extension; optionally a PNG of them.
#include <fstream>
#include <iomanip>

#include <torch/torch.h>

#include "jobs/setup.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

ParamTable sample_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/false);
  t.group("Sampling");
  t.text("checkpoint", nullptr, "checkpoint to sample from (required)");
  t.text("model", nullptr, "model inside the checkpoint (default: policy, else base)");
  t.integer("n", 1000, "number of samples", 1, 1 << 24);
  t.integer("steps", 50, "sampler steps", 1, 100000);
  t.text("sampler", "euler", "ODE sampler", samplers().names());
  t.number("shift", 1.0, "grid shift s", 0, 1000, true);
  t.text("plot", nullptr, "also write a PNG of the samples here");
  return t;
}

nlohmann::json run_sample(const Config& cfg, JobIO io) {
  if (!cfg.is_set("checkpoint")) throw ConfigError("--checkpoint: required");
  if (!cfg.is_set("out")) throw ConfigError("--out: the output file is required (.csv or .safetensors)");
  const std::string out = cfg.text("out");
  if (!ends_with(out, ".csv") && !ends_with(out, ".safetensors"))
    throw ConfigError("--out: '" + out + "' must end in .csv or .safetensors");
  const torch::Device device = jobs::setup_device(cfg);
  const std::string path = cfg.text("checkpoint");
  const auto meta = read_checkpoint_meta(path);
  const std::string name = jobs::pick_model(meta, cfg.raw("model"), path);
  auto model = load_checkpoint_model(path, name);
  model->to(device);
  model->eval();
  // The sample shape comes from the task the checkpoint was trained on.
  if (!meta.contains("config") || !meta["config"].contains("task"))
    throw InputError(path + ": checkpoint metadata has no task");
  const auto& c = meta["config"];
  TaskPtr task = make_task(c["task"].get<std::string>(), c.value("mixture", nlohmann::json()));
  std::vector<int64_t> shape = {cfg.integer("n")};
  for (auto s : task->sample_shape()) shape.push_back(s);
  Rng rng(static_cast<uint64_t>(cfg.integer("seed")));
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  auto result = sample(*model, x1, {},
                       SampleOptions()
                           .sampler(cfg.text("sampler"))
                           .steps(cfg.integer("steps"))
                           .shift(cfg.number("shift")),
                       &rng);
  auto x0 = result.x0.cpu();
  if (ends_with(out, ".csv")) {
    auto flat = x0.reshape({x0.size(0), -1}).to(torch::kDouble).contiguous();
    std::ostringstream s;
    s << std::setprecision(9);
    const double* p = flat.data_ptr<double>();
    for (int64_t i = 0; i < flat.size(0); ++i) {
      for (int64_t j = 0; j < flat.size(1); ++j) s << (j ? "," : "") << p[i * flat.size(1) + j];
      s << "\n";
    }
    write_file_atomic(out, s.str());
  } else {
    save_safetensors(out, {{"samples", x0}}, {{"ramflow", nlohmann::json{{"checkpoint", path}, {"model", name}}.dump()}});
  }
  if (cfg.is_set("plot")) sample_panels(cfg.text("plot"), {jobs::panel(name, x0)});
  io.log << "wrote " << x0.size(0) << " samples of model '" << name << "' to " << out << " ("
         << result.nfe << " network evaluations)\n";
  return {{"samples", x0.size(0)}, {"model", name}, {"nfe", result.nfe}, {"out", out}};
}

}  // namespace ramflow
