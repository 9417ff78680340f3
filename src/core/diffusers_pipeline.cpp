// A diffusers SD3 pipeline folder (see include/ramflow/diffusers_pipeline.h).
#include "ramflow/diffusers_pipeline.h"

#include <filesystem>

#include "ramflow/diffusers_files.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

/// The scheduler's shift, its other settings checked to be the grid ramflow computes (T = 1000
/// training steps: sigma_min = shift(1/1000), and the transformer's time input 1000 t).
void read_scheduler(const std::string& dir, DiffusersPipeline& p) {
  const auto path = join(dir, "scheduler/scheduler_config.json");
  const auto s = read_diffusers_json(path, "the pipeline's scheduler config");
  if (!s.is_object() || s.value("_class_name", std::string()) != "FlowMatchEulerDiscreteScheduler")
    throw InputError(path + ": \"_class_name\" must be 'FlowMatchEulerDiscreteScheduler'");
  auto number = [&](const char* key, double def) {
    if (!s.contains(key)) return def;
    if (!s[key].is_number()) throw InputError(path + ": '" + key + "' must be a number");
    return s[key].get<double>();
  };
  p.shift = number("shift", 1.0);
  if (!(p.shift > 0)) throw InputError(path + ": needs shift > 0");
  if (number("num_train_timesteps", 1000) != 1000)
    throw InputError(path + ": 'num_train_timesteps' must be 1000 (SD3's grid and time input)");
  // Grid options ramflow does not compute: refused rather than silently ignored.
  for (const char* key : {"use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas",
                          "use_beta_sigmas", "invert_sigmas", "stochastic_sampling"})
    if (s.contains(key) && s[key].is_boolean() && s[key].get<bool>())
      throw InputError(path + ": '" + key + "' is true; ramflow computes the plain shifted grid");
  if (s.contains("shift_terminal") && !s["shift_terminal"].is_null())
    throw InputError(path + ": 'shift_terminal' is set; ramflow computes the plain shifted grid");
}

}  // namespace

nlohmann::json DiffusersPipeline::transformer_spec(torch::Dtype dtype) const {
  return {{"type", "sd3"}, {"weights", join(dir, "transformer")}, {"dtype", dtype_name(dtype)}};
}

nlohmann::json DiffusersPipeline::decoder_spec(torch::Dtype dtype) const {
  return {{"type", "vae"}, {"weights", join(dir, "vae")}, {"dtype", dtype_name(dtype)}};
}

std::vector<int64_t> DiffusersPipeline::latent_shape(int64_t height, int64_t width) const {
  const int64_t f = vae.factor(), P = transformer.patch_size();
  if (height == 0) height = transformer.sample_size() * f;
  if (width == 0) width = transformer.sample_size() * f;
  if (height % (f * P) || width % (f * P))
    throw ConfigError("--height/--width: " + std::to_string(height) + " x " +
                      std::to_string(width) + " must be multiples of " + std::to_string(f * P) +
                      " (the VAE's factor " + std::to_string(f) + " times the patch size " +
                      std::to_string(P) + ")");
  const int64_t h = height / f, w = width / f, M = transformer.pos_embed_max_size();
  if (h / P > M || w / P > M)
    throw ConfigError("--height/--width: " + std::to_string(height) + " x " +
                      std::to_string(width) + " exceeds the transformer's position table (" +
                      std::to_string(M * P * f) + " pixels a side)");
  return {transformer.in_channels(), h, w};
}

bool is_diffusers_pipeline(const std::string& dir) {
  return fs::is_regular_file(join(dir, "model_index.json"));
}

DiffusersPipeline read_diffusers_pipeline(const std::string& dir) {
  if (!fs::is_directory(dir)) throw InputError(dir + ": not a directory (a diffusers pipeline)");
  const auto index_path = join(dir, "model_index.json");
  const auto index = read_diffusers_json(index_path, "a diffusers pipeline's index");
  const auto cls = index.is_object() ? index.value("_class_name", std::string()) : std::string();
  if (cls != "StableDiffusion3Pipeline")
    throw InputError(index_path + ": \"_class_name\" is '" + cls +
                     "', expected 'StableDiffusion3Pipeline'");
  DiffusersPipeline p;
  // Absolute: the specs of checkpoints name the weights by it, whatever the directory a run is
  // resumed or evaluated from.
  p.dir = fs::absolute(dir).lexically_normal().string();
  const auto tdir = join(dir, "transformer"), vdir = join(dir, "vae");
  p.transformer = SD3TransformerOptions::from_json(
      read_component_config(tdir, "SD3Transformer2DModel"), tdir + "/config.json");
  p.vae = VAEDecoderOptions::from_json(read_component_config(vdir, "AutoencoderKL"),
                                       vdir + "/config.json");
  component_weight_files(tdir);  // present (single or every shard)
  component_weight_files(vdir);
  read_scheduler(dir, p);
  if (p.transformer.in_channels() != p.vae.latent_channels())
    throw InputError(dir + ": the transformer takes " +
                     std::to_string(p.transformer.in_channels()) + " latent channels, the VAE " +
                     std::to_string(p.vae.latent_channels()));
  return p;
}

}  // namespace ramflow
