#pragma once
// Files the repository ships in models/: the fashion and words base models, the fashion
// classifiers and the words reader. A name is looked up in $RAMFLOW_MODELS_DIR when it is set, then
// in the source tree's models/ directory, then in the installed copy (share/ramflow/models under
// the install prefix; the build records both places), so the binary finds them wherever it runs
// from.
#include <string>

namespace ramflow {

/// The path of shipped file `name` (e.g. "fashion_base.safetensors"); InputError naming the places
/// searched when it is absent.
std::string asset_path(const std::string& name);

/// `spec_value` if it names an existing file, else asset_path(spec_value): a reward's or a task's
/// "checkpoint" field may be a path or a shipped file's name.
std::string resolve_model_file(const std::string& spec_value);

}  // namespace ramflow
