#pragma once
// Configuration: a table of typed parameters (key, type, default, range, help), resolved from
// defaults, then an optional JSON config file, then command-line flags, each overriding the one
// before. Unknown keys and flags, wrong types and out-of-range values throw ConfigError naming the
// culprit.
//
// Keys are lower_snake (`reward_center`); the matching flag is `--reward-center`. The resolved
// config has every key written out, so a run directory's config.json reproduces the run exactly.
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ramflow {

using json = nlohmann::json;

enum class ParamType { kInt, kFloat, kString, kBool, kFloatList, kJson };

struct Param {
  std::string key;
  ParamType type = ParamType::kFloat;
  json default_value;  // null means "unset" (optional parameter)
  std::string help;
  std::string group;  // heading in --help
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;        // value must be > min instead of >= min
  std::vector<std::string> choices;  // allowed strings (kString)
  /// Taken from flags only; a config file's value is ignored (where a run writes, such as --out: a
  /// run's config.json then serves as the config of another run).
  bool flag_only = false;

  /// The command-line flag: "--" + key with '_' replaced by '-'.
  std::string flag() const;
};

class ParamTable {
 public:
  ParamTable& add(Param p);
  /// Shorthands for the common cases.
  ParamTable& number(const std::string& key, json def, std::string help, double min, double max,
                     bool min_exclusive = false);
  /// An integer parameter; `def` null makes it optional (unset unless given).
  ParamTable& integer(const std::string& key, json def, std::string help, int64_t min, int64_t max);
  ParamTable& text(const std::string& key, json def, std::string help,
                   std::vector<std::string> choices = {});
  ParamTable& boolean(const std::string& key, bool def, std::string help);
  ParamTable& list(const std::string& key, json def, std::string help);
  ParamTable& object(const std::string& key, json def, std::string help);
  /// Sets the --help heading for parameters added after this call.
  ParamTable& group(std::string name);

  /// Marks `key` (already added) as taken from flags only (Param::flag_only).
  ParamTable& flag_only(const std::string& key);
  /// Records that `old_key` is now `new_key`: config files and run directories that use the old
  /// name keep working (read as the new key); a flag of the old name is an error that names the new
  /// one.
  ParamTable& renamed(const std::string& old_key, const std::string& new_key);
  /// The current name of a renamed key, or nullptr.
  const std::string* renamed_to(const std::string& old_key) const;
  const Param* find(const std::string& key) const;
  const std::vector<Param>& params() const { return params_; }

 private:
  std::vector<Param> params_;
  std::vector<std::pair<std::string, std::string>> renamed_;  // old key -> new key
  std::string group_;
};

/// A resolved configuration: every key of its table, typed and validated.
class Config {
 public:
  /// defaults <- config file (if `file` is non-empty) <- flags (pairs of key and raw text).
  static Config resolve(const ParamTable& table, const std::string& file,
                        const std::vector<std::pair<std::string, std::string>>& flags);
  /// defaults <- `values` (a JSON object; `source` names it in errors).
  static Config from_json(const ParamTable& table, const json& values, const std::string& source);

  double number(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  const std::string& text(const std::string& key) const;
  bool boolean(const std::string& key) const;
  std::vector<double> list(const std::string& key) const;
  const json& raw(const std::string& key) const;
  bool is_set(const std::string& key) const { return !raw(key).is_null(); }

  /// Overrides one key with a JSON value (validated like a config-file entry).
  void set(const std::string& key, const json& value);
  /// True if the key came from the config file or a flag (not from the table's default).
  bool is_explicit(const std::string& key) const { return explicit_.count(key) > 0; }
  /// The keys given by the file or flags, and their values: what the user asked for.
  json given() const;
  /// Makes exactly `keys` the explicit ones (a resumed run restores its first invocation's set, so
  /// that presets apply again where they applied then).
  void set_explicit_keys(const std::set<std::string>& keys);
  /// Sets the keys of `defaults` (an object) that were not given explicitly: a method's preset.
  void apply_defaults(const json& defaults);

  const json& values() const { return values_; }
  const ParamTable& table() const { return *table_; }
  /// The keys read through the accessors above since construction or the last clear_reads(): what a
  /// factory (a method's from_config) depends on.
  const std::set<std::string>& keys_read() const { return read_; }
  void clear_reads() const { read_.clear(); }

 private:
  Config(std::shared_ptr<const ParamTable> table, json values)
      : table_(std::move(table)), values_(std::move(values)) {}
  std::shared_ptr<const ParamTable> table_;  // owned copy: a Config outlives the table it came from
  json values_;
  std::set<std::string> explicit_;  // keys given by the file or flags
  mutable std::set<std::string> read_;
};

/// Parses one flag's text into the parameter's JSON type; throws ConfigError naming the flag.
json parse_flag_value(const Param& p, const std::string& text);

/// Parses JSON text; throws ConfigError naming `source` for bad JSON or a key repeated in one
/// object.
json parse_json_strict(const std::string& text, const std::string& source);

/// Reads a JSON file; throws InputError for a missing or unreadable file, ConfigError for bad JSON
/// or a repeated key.
json read_json_file(const std::string& path);

/// The closest key to `name` in `keys` by edit distance, or "" if none is close.
std::string closest_name(const std::string& name, const std::vector<std::string>& keys);

/// Reads fields of a JSON spec object (a reward or task spec) and at the end rejects unknown
/// fields.
class SpecReader {
 public:
  SpecReader(const json& spec, std::string what);
  double number(const std::string& key, std::optional<double> def = std::nullopt);
  std::vector<double> numbers(const std::string& key,
                              std::optional<std::vector<double>> def = std::nullopt);
  std::string text(const std::string& key, std::optional<std::string> def = std::nullopt);
  /// An integer in [min, max] (ConfigError naming the field and the range otherwise).
  int64_t integer(const std::string& key, std::optional<int64_t> def = std::nullopt,
                  int64_t min = 1, int64_t max = 1000000000);
  /// true or false.
  bool flag(const std::string& key, std::optional<bool> def = std::nullopt);
  const json& value(const std::string& key);
  bool has(const std::string& key) const { return spec_.contains(key); }
  /// Throws ConfigError if the spec has a field that was never read.
  void finish() const;
  const std::string& what() const { return what_; }

 private:
  const json& spec_;
  std::string what_;
  std::vector<std::string> used_;
};

}  // namespace ramflow
