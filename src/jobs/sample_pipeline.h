#pragma once
// `ramflow sample --base DIR` (a diffusers SD3 pipeline, sample_pipeline_job.cpp) and `ramflow
// sample --checkpoint CKPT --prompts FILE` (sample_prompts_job.cpp). Internal to the library.
#include <nlohmann/json.hpp>

#include "ramflow/config.h"
#include "ramflow/jobs.h"
#include "ramflow/sampler.h"
#include "ramflow/task.h"

namespace ramflow::jobs {

nlohmann::json run_sample_pipeline(const Config& cfg, JobIO io);
nlohmann::json run_sample_prompts(const Config& cfg, JobIO io);
/// Samples of `model` from noise x1 [N, ...] with conditions `cond` by the sample job's settings
/// (--sampler, --steps, --shift), guided with --cfg when the batch is conditional and cfg != 1.
SampleResult sample_with(const Config& cfg, VelocityFieldImpl& model, const Task& task,
                         const torch::Tensor& x1, const Condition& cond, Rng& rng);

}  // namespace ramflow::jobs
