// Shipped model files (see include/ramflow/assets.h).
#include "ramflow/assets.h"

#include <cstdlib>
#include <filesystem>

#include "ramflow/errors.h"
#include "ramflow/strings.h"

#ifndef RAMFLOW_SOURCE_MODELS_DIR
#define RAMFLOW_SOURCE_MODELS_DIR ""
#endif
#ifndef RAMFLOW_INSTALL_MODELS_DIR
#define RAMFLOW_INSTALL_MODELS_DIR ""
#endif

namespace ramflow {

std::string asset_path(const std::string& name) {
  namespace fs = std::filesystem;
  std::vector<std::string> searched;
  const char* const dirs[] = {std::getenv("RAMFLOW_MODELS_DIR"), RAMFLOW_SOURCE_MODELS_DIR,
                              RAMFLOW_INSTALL_MODELS_DIR};
  for (const char* dir : dirs) {
    if (dir == nullptr || *dir == '\0') continue;
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p)) return p.string();
    searched.push_back(fs::path(dir).string());
  }
  throw InputError("shipped model file '" + name + "' not found (searched: " +
                   (searched.empty() ? std::string("nowhere") : join(searched)) +
                   "); set RAMFLOW_MODELS_DIR to the directory that holds it");
}

std::string resolve_model_file(const std::string& spec_value) {
  if (std::filesystem::exists(spec_value)) return spec_value;
  if (spec_value.find('/') != std::string::npos) throw InputError(spec_value + ": no such file");
  return asset_path(spec_value);
}

}  // namespace ramflow
