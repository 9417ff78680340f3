#pragma once
// The base model of a run: loaded from --base, else from the pretraining cache, else pretrained now
// and cached. Internal to the library.
#include <memory>

#include <torch/types.h>

#include "ramflow/config.h"
#include "ramflow/jobs.h"
#include "ramflow/pretrain.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow::jobs {

/// A fresh model of the configured architecture (its initial weights drawn from pretrain_seed, so
/// that the seed fixes the base model) on `device`, and the pretraining of it on the task's data
/// with the pretrain_* settings.
struct BasePretraining {
  VelocityFieldPtr model;
  std::unique_ptr<Pretrainer> pretrainer;
};
BasePretraining start_pretraining(const Config& cfg, const Task& task, torch::Device device);

/// The base model: loaded from `base` if set, else from the pretraining cache, else pretrained now
/// and cached. The returned model is on `device` in eval mode.
VelocityFieldPtr base_model(const Config& cfg, const Task& task, torch::Device device, JobIO io);

}  // namespace ramflow::jobs
