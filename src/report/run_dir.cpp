// The run directory (see include/ramflow/run_dir.h).
#include "ramflow/run_dir.h"

#include <filesystem>
#include <sstream>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace fs = std::filesystem;

namespace ramflow {

void write_json_atomic(const std::string& path, const nlohmann::json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

RunDir::RunDir(std::string path, bool writes) : path_(std::move(path)), writes_(writes) {}

RunDir RunDir::follow(const std::string& path) { return RunDir(path, /*writes=*/false); }

void RunDir::check(const std::string& path, bool overwrite) {
  if (path.empty()) throw ConfigError("--out: the run directory must not be empty");
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  if (!fs::is_directory(path, ec)) throw InputError(path + ": exists and is not a directory");
  if (fs::is_empty(path, ec)) return;
  if (!overwrite)
    throw InputError(path +
                     ": run directory exists and is not empty (pass --overwrite to replace it)");
  if (!fs::exists(fs::path(path) / "config.json"))
    throw InputError(
        path + ": refusing to overwrite a directory that is not a ramflow run (no config.json)");
}

RunDir RunDir::create(const std::string& path, bool overwrite) {
  check(path, overwrite);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    if (!fs::is_empty(path, ec)) {
      // Remove the summary first: if clearing fails half-way, nothing left looks like a complete
      // run.
      fs::remove(fs::path(path) / "summary.json", ec);
      try {
        for (const auto& entry : fs::directory_iterator(path)) remove_tree(entry.path().string());
      } catch (const IOError& e) {
        throw IOError(path + ": cannot clear: " + e.what());
      }
    }
  }
  fs::create_directories(fs::path(path) / "checkpoints", ec);
  fs::create_directories(fs::path(path) / "plots", ec);
  if (ec) throw IOError(path + ": cannot create run directory (" + ec.message() + ")");
  return RunDir(path);
}

RunDir RunDir::open(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) throw InputError(path + ": no such run directory");
  if (!fs::exists(fs::path(path) / "config.json", ec))
    throw InputError(path + ": not a ramflow run directory (no config.json)");
  fs::create_directories(fs::path(path) / "checkpoints", ec);
  fs::create_directories(fs::path(path) / "plots", ec);
  return RunDir(path);
}

std::vector<nlohmann::json> RunDir::rewind_metrics(
    int64_t step, const std::function<bool(const nlohmann::json&)>& drop) {
  metrics_.reset();
  std::vector<nlohmann::json> kept;
  std::error_code ec;
  if (!fs::exists(file("metrics.jsonl"), ec)) return kept;
  std::istringstream in(read_file(file("metrics.jsonl")));
  std::string text;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      continue;  // a line torn by a kill
    }
    auto after = [&](const char* key) {
      return record.is_object() && record.contains(key) && record[key].is_number() &&
             record[key].get<double>() > static_cast<double>(step);
    };
    if (!record.is_object() || after("step") || after("eval_step") || (drop && drop(record)))
      continue;
    text += line + "\n";
    kept.push_back(std::move(record));
  }
  if (writes_) write_file_atomic(file("metrics.jsonl"), text);
  return kept;
}

std::string RunDir::file(const std::string& relative) const {
  return (fs::path(path_) / relative).string();
}
std::string RunDir::checkpoint(const std::string& name) const {
  return file("checkpoints/" + name + ".safetensors");
}
std::string RunDir::plot(const std::string& name) const { return file("plots/" + name + ".png"); }

void RunDir::write_config(const nlohmann::json& config, const nlohmann::json& given) const {
  if (!writes_) return;
  if (given.is_object()) write_json_atomic(file("config_given.json"), given);
  write_json_atomic(file("config.json"), config);
}
void RunDir::write_summary(const nlohmann::json& summary) const {
  if (!writes_) return;
  write_json_atomic(file("summary.json"), summary);
}

void RunDir::append_metrics(const nlohmann::json& record) {
  if (!writes_) return;
  if (!metrics_) {
    metrics_ = std::make_shared<std::ofstream>(file("metrics.jsonl"), std::ios::app);
    if (!*metrics_) throw IOError(file("metrics.jsonl") + ": cannot open for writing");
  }
  *metrics_ << record.dump() << '\n';
  metrics_->flush();
  if (!*metrics_) throw IOError(file("metrics.jsonl") + ": write failed");
}

}  // namespace ramflow
