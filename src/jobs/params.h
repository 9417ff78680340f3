#pragma once
// The parameter groups of the jobs: each job's table is a selection of these. Internal to the
// library.
#include "ramflow/config.h"

namespace ramflow::jobs {

void add_run_params(ParamTable& t, bool out_is_dir);
/// --words, the words task's settings (pretrain, finetune, train-classifier).
void add_words_param(ParamTable& t);
void add_task_params(ParamTable& t);
void add_pretrain_params(ParamTable& t);
void add_reward_params(ParamTable& t, bool with_defaults);
void add_eval_params(ParamTable& t);
/// resume, checkpoint_every, keep_checkpoints (the training jobs).
void add_checkpoint_params(ParamTable& t);
/// dist_timeout, dist_backend: the processes of a data-parallel run (finetune).
void add_distributed_params(ParamTable& t);
/// method (when `with_method`), every method's keys, rollouts and optimisation.
void add_training_params(ParamTable& t, bool with_method = true);

}  // namespace ramflow::jobs
