// RAM with an annealed tilt (see include/ramflow/ram_anneal.h).
#include "ramflow/ram_anneal.h"

#include <algorithm>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/stage_state.h"

namespace ramflow {

RAMOptions RAMAnneal::per_stage(RAMOptions ram, int64_t stages) {
  if (stages < 1) throw ConfigError("ram-anneal: stages must be >= 1");
  return ram.multiplier(ram.multiplier() / static_cast<double>(stages));
}

RAMAnneal::RAMAnneal(RAMOptions ram, RAMAnnealOptions anneal)
    : RAM(per_stage(ram, anneal.stages())), anneal_(anneal), multiplier_(ram.multiplier()) {
  if (anneal_.stage_steps() < 1) throw ConfigError("ram-anneal: stage_steps must be >= 1");
}

void RAMAnneal::begin_step(int64_t step, const Policies& models) {
  const int64_t due = std::min(anneal_.stages(), step / anneal_.stage_steps() + 1);
  if (due > stage_) {
    stage_ref_ = frozen_copy(models.policy);  // p_s-1: the model that ended the previous stage
    stage_ = due;
  }
}

LossOutput RAMAnneal::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  Policies staged{models.policy, stage_ref_ ? *stage_ref_ : models.ref, models.old, models.reward};
  LossOutput out = RAM::loss(batch, staged, rng);
  out.metrics["stage"] = static_cast<double>(stage_);
  return out;
}

MethodState RAMAnneal::state() const {
  MethodState st;
  save_stage(st, {stage_, stage_ref_});
  return st;
}

void RAMAnneal::load_state(const MethodState& st, const Policies& models) {
  StageState restored = load_stage(st, anneal_.stages(), models, name());
  stage_ = restored.stage;
  stage_ref_ = restored.frozen;
}

nlohmann::json RAMAnneal::options() const {
  auto j = RAM::options();
  j["multiplier"] = multiplier_;
  j["stage_multiplier"] = multiplier_ / static_cast<double>(anneal_.stages());
  j["stages"] = anneal_.stages();
  j["stage_steps"] = anneal_.stage_steps();
  return j;
}

void RAMAnneal::add_params(ParamTable& t) {
  t.group("RAM with an annealed tilt (method ram-anneal; also uses the ram keys)");
  t.integer("anneal_stages", 8,
            "S: stages of multiplier m / S, each against the previous stage's model", 1, 1000);
  t.integer("anneal_stage_steps", 60, "steps per stage (the last stage runs on)", 1, 100000000);
}

MethodPtr RAMAnneal::from_config(const Config& cfg) {
  auto ram = RAM::from_config(cfg);
  return std::make_unique<RAMAnneal>(static_cast<RAM&>(*ram).ram_options(),
                                     RAMAnnealOptions()
                                         .stages(cfg.integer("anneal_stages"))
                                         .stage_steps(cfg.integer("anneal_stage_steps")));
}

}  // namespace ramflow
