// The stage state of staged methods (see include/ramflow/stage_state.h).
#include "ramflow/stage_state.h"

#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"

namespace ramflow {

void save_stage(MethodState& st, const StageState& stage) {
  st.values["stage"] = stage.stage;
  if (stage.frozen)
    for (auto& t : model_tensors("frozen", *stage.frozen)) st.tensors.push_back(std::move(t));
}

StageState load_stage(const MethodState& st, int64_t stages, const Policies& models,
                      const std::string& method) {
  StageState out;
  const auto it = st.values.find("stage");
  out.stage = it != st.values.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  if (out.stage < 1 || out.stage > stages)
    throw InputError(method + ": checkpoint stage " + std::to_string(out.stage) + " is not in 1.." +
                     std::to_string(stages));
  if (out.stage > 1) {  // the frozen model that ended stage s - 1
    out.frozen = frozen_copy(models.policy);
    load_model_tensors(st.tensors, "frozen", *out.frozen, method + " state");
  }
  return out;
}

}  // namespace ramflow
