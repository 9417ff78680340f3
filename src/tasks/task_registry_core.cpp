// The task registry of the core library (target ramflow_core): the built-in list alone.
#include "ramflow/task.h"

namespace ramflow {

const Registry<TaskInfo>& tasks() {
  static const Registry<TaskInfo> registry = [] {
    Registry<TaskInfo> r("task");
    register_builtin_tasks(r);
    return r;
  }();
  return registry;
}

}  // namespace ramflow
