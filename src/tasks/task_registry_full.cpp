// The task registry of the full library (target ramflow): the core's built-in list, then the tasks
// that need libraries the core does without (FreeType), one line each.
#include "ramflow/task.h"
#include "ramflow/words_task.h"

namespace ramflow {

const Registry<TaskInfo>& tasks() {
  static const Registry<TaskInfo> registry = [] {
    Registry<TaskInfo> r("task");
    register_builtin_tasks(r);
    r.add("words", {make_words_task, words_task_preset(), /*images=*/true},
          "images of words drawn with FreeType (A-Z, 16x64 grey), conditioned on the word's "
          "letters; held-out words for evaluation");
    return r;
  }();
  return registry;
}

}  // namespace ramflow
