#pragma once
// The run directory: a stable contract that scripts and the comparison harness read.
//   RUN/config.json       the fully resolved configuration (every default written out)
//   RUN/config_given.json the keys the user set, with their values (training jobs)
//   RUN/metrics.jsonl     one JSON object per line: training steps ({"step", ...}) and evaluations
//                         ({"eval_step", ...})
//   RUN/summary.json      final numbers; written last, so its presence marks a complete run
//   RUN/checkpoints/      safetensors checkpoints
//   RUN/plots/*.png       samples and curves
// Every file except metrics.jsonl (appended line by line) is written atomically. A resumed run
// (--resume) continues metrics.jsonl from its checkpoint's step: no line is lost or repeated.
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ramflow {

class RunDir {
 public:
  /// Creates the directory. An existing non-empty one is refused unless `overwrite`; even then only
  /// a directory that looks like a ramflow run (it has config.json) is cleared.
  static RunDir create(const std::string& path, bool overwrite);
  /// What create() checks before it touches anything (an existing non-empty directory without
  /// `overwrite`, or one that is not a run): throws InputError, creates nothing.
  static void check(const std::string& path, bool overwrite);
  /// An existing run directory (it has config.json), to continue: throws InputError if it is not
  /// one.
  static RunDir open(const std::string& path);
  /// The run directory `path` as a process other than rank 0 of a data-parallel run sees it
  /// (docs/distributed.md): its paths, and the metrics it reads back on resume, but no writes
  /// (write_config, write_summary and append_metrics do nothing; rewind_metrics only reads).
  static RunDir follow(const std::string& path);
  /// False for follow()'s directory: the caller's other files (plots, checkpoints) are not written.
  bool writes() const { return writes_; }

  const std::string& path() const { return path_; }
  std::string file(const std::string& relative) const;
  std::string checkpoint(const std::string& name) const;  // checkpoints/<name>.safetensors
  std::string plot(const std::string& name) const;        // plots/<name>.png

  /// config.json (every key resolved) and, when `given` is an object, config_given.json: the keys
  /// the user set (flags and config file), which a resumed run needs to apply presets as the first
  /// did.
  void write_config(const nlohmann::json& config, const nlohmann::json& given = nullptr) const;
  void write_summary(const nlohmann::json& summary) const;
  /// Appends one line to metrics.jsonl and flushes it.
  void append_metrics(const nlohmann::json& record);
  /// For a run resumed at step `step`: keeps the lines of metrics.jsonl that belong to steps <=
  /// step
  /// ({"step": k} and {"eval_step": k} with k <= step; a torn last line, from a kill mid-write, is
  /// dropped), except those `drop` selects; rewrites the file atomically and returns the kept
  /// records in order.
  std::vector<nlohmann::json> rewind_metrics(
      int64_t step, const std::function<bool(const nlohmann::json&)>& drop = {});

 private:
  explicit RunDir(std::string path, bool writes = true);
  std::string path_;
  bool writes_ = true;
  std::shared_ptr<std::ofstream> metrics_;
};

/// Writes JSON text (pretty-printed, newline-terminated) atomically.
void write_json_atomic(const std::string& path, const nlohmann::json& value);

}  // namespace ramflow
