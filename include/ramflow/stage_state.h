#pragma once
// The state that staged methods (ram-anneal, ram-tilt) keep across steps: the stage s and the
// frozen copy of the model that ended stage s - 1 (none in stage 1, where the base model serves).
// Saved into and restored from a MethodState (method.h) under the tensor prefix "frozen".
#include <string>

#include "ramflow/method.h"

namespace ramflow {

struct StageState {
  int64_t stage = 1;
  VelocityFieldPtr frozen;  // null in stage 1
};

/// Writes the stage (values["stage"]) and the frozen model's tensors ("frozen.*") into `st`.
void save_stage(MethodState& st, const StageState& stage);
/// Reads them back for a method of `stages` stages: the frozen model rebuilt as a frozen copy of
/// the policy, then filled from the tensors. Throws InputError naming `method` if the stage is out
/// of range or a tensor is missing.
StageState load_stage(const MethodState& st, int64_t stages, const Policies& models,
                      const std::string& method);

}  // namespace ramflow
