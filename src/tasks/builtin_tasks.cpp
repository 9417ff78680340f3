// The list of built-in tasks of the core library: one line per task. Adding a task = one file +
// one line here (or in src/tasks/task_registry_full.cpp for a task that needs the full library's
// dependencies).
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/image_task.h"
#include "ramflow/mixture_task.h"
#include "ramflow/prompt_ring_task.h"
#include "ramflow/prompt_task.h"

namespace ramflow {
namespace {

TaskFactory fixed(std::string name, GaussianMixture (*make)()) {
  return [name, make](const nlohmann::json& params) -> TaskPtr {
    if (!params.is_null())
      throw ConfigError("task '" + name + "' takes no parameters, got " + params.dump() +
                        " (use task 'mixture' for a custom mixture)");
    return make_mixture_task(name, make(), nullptr);
  };
}

GaussianMixture ring() { return GaussianMixture::ring(8, 4.0, 0.15); }
GaussianMixture gauss1d() { return GaussianMixture::single({1.0}, 0.5); }
GaussianMixture gauss2d() { return GaussianMixture::single({1.0, -1.0}, 0.5); }

TaskPtr custom_mixture(const nlohmann::json& params) {
  if (params.is_null())
    throw ConfigError(
        "task 'mixture' needs its mixture: set 'mixture' to "
        "{\"weights\": [...], \"means\": [[...]], \"stds\": [...]}");
  return make_mixture_task("mixture", GaussianMixture::from_json(params, "task 'mixture'"), params);
}

}  // namespace

void register_builtin_tasks(Registry<TaskInfo>& r) {
  r.add("ring", {fixed("ring", ring)}, "8-mode Gaussian ring, radius 4, per-mode std 0.15 (2-D)");
  r.add("gauss1d", {fixed("gauss1d", gauss1d)}, "single Gaussian N(1, 0.5^2) (1-D)");
  r.add("gauss2d", {fixed("gauss2d", gauss2d)}, "single Gaussian N((1,-1), 0.5^2 I) (2-D)");
  r.add("mixture", {custom_mixture}, "Gaussian mixture from the 'mixture' setting");
  r.add("ring-prompts", {make_prompt_ring_task, {{"pretrain_label_dropout", 0.1}}},
        "the ring asked for by prompt: 8 directions with random context/pooled embeddings (2-D, "
        "text-conditioned)");
  r.add("prompts", {make_prompt_task},
        "text-to-image post-training of a diffusers SD3 pipeline (--base): prompts and their "
        "embeddings from files (--prompts, --prompt-embeds, --eval-prompts)");
  r.add("fashion",
        {[](const nlohmann::json& p) { return make_image_task(fashion_mnist_info(), p); },
         image_task_preset(), /*images=*/true},
        "Fashion-MNIST: 10 classes of 28x28 grey images, class-conditional (--data-dir)");
}

TaskPtr make_task(const std::string& name, const nlohmann::json& params) {
  return tasks().get(name).make(params);
}

}  // namespace ramflow
