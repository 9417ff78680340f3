#pragma once
// The run directory: a stable contract that scripts and the comparison harness read.
//   RUN/config.json       the fully resolved configuration (every default written out)
//   RUN/metrics.jsonl     one JSON object per line: training steps ({"step", ...}) and evaluations
//                         ({"eval_step", ...})
//   RUN/summary.json      final numbers; written last, so its presence marks a complete run
//   RUN/checkpoints/      safetensors checkpoints
//   RUN/plots/*.png       samples and curves
// Every file except metrics.jsonl (appended line by line) is written atomically.
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace ramflow {

class RunDir {
 public:
  /// Creates the directory. An existing non-empty one is refused unless `overwrite`; even then only a
  /// directory that looks like a ramflow run (it has config.json) is cleared.
  static RunDir create(const std::string& path, bool overwrite);
  /// What create() checks before it touches anything (an existing non-empty directory without
  /// `overwrite`, or one that is not a run): throws InputError, creates nothing.
  static void check(const std::string& path, bool overwrite);

  const std::string& path() const { return path_; }
  std::string file(const std::string& relative) const;
  std::string checkpoint(const std::string& name) const;  // checkpoints/<name>.safetensors
  std::string plot(const std::string& name) const;        // plots/<name>.png

  void write_config(const nlohmann::json& config) const;
  void write_summary(const nlohmann::json& summary) const;
  /// Appends one line to metrics.jsonl and flushes it.
  void append_metrics(const nlohmann::json& record);

 private:
  explicit RunDir(std::string path);
  std::string path_;
  std::shared_ptr<std::ofstream> metrics_;
};

/// Writes JSON text (pretty-printed, newline-terminated) atomically.
void write_json_atomic(const std::string& path, const nlohmann::json& value);

}  // namespace ramflow
