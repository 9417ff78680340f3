#pragma once
// The base model of a run: loaded from --base, else from the pretraining cache, else pretrained now
// and cached. Internal to the library.
#include <functional>

#include <torch/types.h>

#include "ramflow/config.h"
#include "ramflow/jobs.h"
#include "ramflow/pretrain.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow::jobs {

/// Pretrains a fresh model of the configured architecture on the task, with a progress bar.
VelocityFieldPtr pretrain_base(const Config& cfg, const Task& task, torch::Device device, JobIO io,
                               const std::function<void(const PretrainRecord&)>& on_step = {});

/// The base model: loaded from `base` if set, else from the pretraining cache, else pretrained now
/// and cached. The returned model is on `device` in eval mode.
VelocityFieldPtr base_model(const Config& cfg, const Task& task, torch::Device device, JobIO io);

}  // namespace ramflow::jobs
