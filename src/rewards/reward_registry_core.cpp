// The reward registry of the core library (target ramflow_core): the built-in list alone.
#include "ramflow/reward.h"

namespace ramflow {

const Registry<RewardFactory>& rewards() {
  static const Registry<RewardFactory> registry = [] {
    Registry<RewardFactory> r("reward");
    register_builtin_rewards(r);
    return r;
  }();
  return registry;
}

}  // namespace ramflow
