#pragma once
// `ramflow sample --base DIR` (a diffusers SD3 pipeline): see sample_pipeline_job.cpp. Internal to
// the library.
#include <nlohmann/json.hpp>

#include "ramflow/config.h"
#include "ramflow/jobs.h"

namespace ramflow::jobs {

nlohmann::json run_sample_pipeline(const Config& cfg, JobIO io);

}  // namespace ramflow::jobs
