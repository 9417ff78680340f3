// The list of built-in methods: one line per method.
#include <torch/torch.h>

#include "ramflow/ram.h"

namespace ramflow {
namespace {

void register_builtin_methods(Registry<MethodInfo>& r) {
  r.add("ram", {RAM::add_params, RAM::from_config}, "Reinforce Adjoint Matching (arXiv 2605.10759)");
}

}  // namespace

const Registry<MethodInfo>& methods() {
  static const Registry<MethodInfo> registry = [] {
    Registry<MethodInfo> r("method");
    register_builtin_methods(r);
    return r;
  }();
  return registry;
}

}  // namespace ramflow
