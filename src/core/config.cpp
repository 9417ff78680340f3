// Configuration resolution and validation (see include/ramflow/config.h).
#include "ramflow/config.h"

#include <stdexcept>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

std::string type_name(ParamType t) {
  switch (t) {
    case ParamType::kInt:
      return "an integer";
    case ParamType::kFloat:
      return "a number";
    case ParamType::kString:
      return "a string";
    case ParamType::kBool:
      return "true or false";
    case ParamType::kFloatList:
      return "a list of numbers";
    case ParamType::kJson:
      return "a JSON value";
  }
  return "?";
}

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::vector<std::string> table_keys(const ParamTable& table) {
  std::vector<std::string> keys;
  for (const auto& p : table.params()) keys.push_back(p.key);
  return keys;
}

// Checks a value's type and range; `where` names the source ("--lr", "cfg.json: key 'lr'").
void validate(const Param& p, const json& v, const std::string& where) {
  if (v.is_null()) return;  // unset optional
  auto bad = [&](const std::string& why) { throw ConfigError(where + ": " + why); };
  auto check_range = [&](double x) {
    if (!std::isfinite(x)) bad("must be finite, got " + fmt(x));
    bool below = p.min_exclusive ? x <= p.min : x < p.min;
    if (below || x > p.max) {
      std::string range = std::string(p.min_exclusive ? "> " : ">= ") + fmt(p.min);
      if (std::isfinite(p.max)) range += " and <= " + fmt(p.max);
      bad(fmt(x) + " is out of range (must be " + range + ")");
    }
  };
  switch (p.type) {
    case ParamType::kInt:
      if (!v.is_number_integer()) bad("expected " + type_name(p.type) + ", got " + v.dump());
      check_range(static_cast<double>(v.get<int64_t>()));
      break;
    case ParamType::kFloat:
      if (!v.is_number()) bad("expected " + type_name(p.type) + ", got " + v.dump());
      check_range(v.get<double>());
      break;
    case ParamType::kString: {
      if (!v.is_string()) bad("expected " + type_name(p.type) + ", got " + v.dump());
      const auto s = v.get<std::string>();
      if (!p.choices.empty() &&
          std::find(p.choices.begin(), p.choices.end(), s) == p.choices.end()) {
        bad("'" + s + "' is not one of: " + join(p.choices));
      }
      break;
    }
    case ParamType::kBool:
      if (!v.is_boolean()) bad("expected " + type_name(p.type) + ", got " + v.dump());
      break;
    case ParamType::kFloatList:
      if (!v.is_array()) bad("expected " + type_name(p.type) + ", got " + v.dump());
      for (const auto& e : v) {
        if (!e.is_number()) bad("expected " + type_name(p.type) + ", got " + v.dump());
        if (!std::isfinite(e.get<double>())) bad("list entries must be finite");
      }
      break;
    case ParamType::kJson:
      break;
  }
}

}  // namespace

std::string Param::flag() const {
  std::string f = "--" + key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

ParamTable& ParamTable::add(Param p) {
  if (find(p.key)) throw Error("parameter '" + p.key + "' is declared twice");
  if (p.group.empty()) p.group = group_;
  validate(p, p.default_value, "default of '" + p.key + "'");
  params_.push_back(std::move(p));
  return *this;
}

ParamTable& ParamTable::number(const std::string& key, json def, std::string help, double min,
                               double max, bool min_exclusive) {
  Param p;
  p.key = key;
  p.type = ParamType::kFloat;
  p.default_value = std::move(def);
  p.help = std::move(help);
  p.min = min;
  p.max = max;
  p.min_exclusive = min_exclusive;
  return add(std::move(p));
}

ParamTable& ParamTable::integer(const std::string& key, json def, std::string help, int64_t min,
                                int64_t max) {
  Param p;
  p.key = key;
  p.type = ParamType::kInt;
  p.default_value = def;
  p.help = std::move(help);
  p.min = static_cast<double>(min);
  p.max = static_cast<double>(max);
  return add(std::move(p));
}

ParamTable& ParamTable::text(const std::string& key, json def, std::string help,
                             std::vector<std::string> choices) {
  Param p;
  p.key = key;
  p.type = ParamType::kString;
  p.default_value = std::move(def);
  p.help = std::move(help);
  p.choices = std::move(choices);
  return add(std::move(p));
}

ParamTable& ParamTable::boolean(const std::string& key, bool def, std::string help) {
  Param p;
  p.key = key;
  p.type = ParamType::kBool;
  p.default_value = def;
  p.help = std::move(help);
  return add(std::move(p));
}

ParamTable& ParamTable::list(const std::string& key, json def, std::string help) {
  Param p;
  p.key = key;
  p.type = ParamType::kFloatList;
  p.default_value = std::move(def);
  p.help = std::move(help);
  return add(std::move(p));
}

ParamTable& ParamTable::object(const std::string& key, json def, std::string help) {
  Param p;
  p.key = key;
  p.type = ParamType::kJson;
  p.default_value = std::move(def);
  p.help = std::move(help);
  return add(std::move(p));
}

ParamTable& ParamTable::group(std::string name) {
  group_ = std::move(name);
  return *this;
}

ParamTable& ParamTable::flag_only(const std::string& key) {
  for (auto& p : params_)
    if (p.key == key) {
      p.flag_only = true;
      return *this;
    }
  throw Error("flag_only: no key '" + key + "'");
}

ParamTable& ParamTable::renamed(const std::string& old_key, const std::string& new_key) {
  if (!find(new_key)) throw std::logic_error("ParamTable::renamed: no key '" + new_key + "'");
  renamed_.emplace_back(old_key, new_key);
  return *this;
}

const std::string* ParamTable::renamed_to(const std::string& old_key) const {
  for (const auto& [from, to] : renamed_)
    if (from == old_key) return &to;
  return nullptr;
}

const Param* ParamTable::find(const std::string& key) const {
  for (const auto& p : params_)
    if (p.key == key) return &p;
  return nullptr;
}

json parse_flag_value(const Param& p, const std::string& text) {
  const std::string where = p.flag();
  auto bad = [&]() -> ConfigError {
    return ConfigError(where + ": expected " + type_name(p.type) + ", got '" + text + "'");
  };
  auto to_double = [&](const std::string& s) {
    size_t used = 0;
    double v;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      throw bad();
    }
    if (used != s.size()) throw bad();
    return v;
  };
  json v;
  switch (p.type) {
    case ParamType::kInt: {
      size_t used = 0;
      long long x;
      try {
        x = std::stoll(text, &used);
      } catch (const std::exception&) {
        throw bad();
      }
      if (used != text.size()) throw bad();
      v = static_cast<int64_t>(x);
      break;
    }
    case ParamType::kFloat:
      v = to_double(text);
      break;
    case ParamType::kString:
      v = text;
      break;
    case ParamType::kBool:
      if (text == "true" || text == "1" || text == "yes") {
        v = true;
      } else if (text == "false" || text == "0" || text == "no") {
        v = false;
      } else {
        throw bad();
      }
      break;
    case ParamType::kFloatList: {
      v = json::array();
      std::stringstream ss(text);
      std::string item;
      while (std::getline(ss, item, ',')) v.push_back(to_double(item));
      if (v.empty()) throw bad();
      break;
    }
    case ParamType::kJson:
      if (json::accept(text))
        v = parse_json_strict(text, where);
      else
        v = text;  // a bare word (e.g. a name) is a JSON string
      break;
  }
  validate(p, v, where);
  return v;
}

json parse_json_strict(const std::string& text, const std::string& source) {
  // JSON allows a key twice in one object and nlohmann keeps the last; in a config that silently
  // drops a setting, so a repeated key is an error. The parser's callback sees every key with its
  // object's depth.
  std::vector<std::set<std::string>> keys;  // the keys seen so far in each open object
  std::string duplicate;
  auto check = [&](int depth, json::parse_event_t event, json& parsed) {
    const auto level = static_cast<size_t>(depth);
    if (event == json::parse_event_t::object_start) {
      keys.resize(level + 1);
      keys[level].clear();
    } else if (event == json::parse_event_t::key && level >= 1 && level <= keys.size()) {
      if (!keys[level - 1].insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json value;
  try {
    value = json::parse(text, check);
  } catch (const json::parse_error& e) {
    throw ConfigError(source + ": not valid JSON (" + std::string(e.what()) + ")");
  } catch (const json::out_of_range& e) {  // a number beyond any double, such as 1e999
    throw ConfigError(source + ": a number is out of range (" + std::string(e.what()) + ")");
  }
  if (!duplicate.empty())
    throw ConfigError(source + ": key '" + duplicate + "' appears twice in one object");
  return value;
}

json read_json_file(const std::string& path) { return parse_json_strict(read_file(path), path); }

std::string closest_name(const std::string& name, const std::vector<std::string>& keys) {
  std::string best;
  size_t best_d = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto& k : keys) {
    size_t d = edit_distance(name, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

Config Config::from_json(const ParamTable& table, const json& values, const std::string& source) {
  json resolved = json::object();
  for (const auto& p : table.params()) resolved[p.key] = p.default_value;
  Config cfg(std::make_shared<const ParamTable>(table), std::move(resolved));
  if (!values.is_object()) throw ConfigError(source + ": expected a JSON object of settings");
  for (const auto& kv : values.items()) {
    std::string key = kv.key();
    if (const std::string* now = table.renamed_to(key)) {  // a file of an earlier version
      if (values.contains(*now))
        throw ConfigError(source + ": '" + key + "' and '" + *now +
                          "' are one key (renamed); give one");
      key = *now;
    }
    if (!cfg.table_->find(key)) {
      auto hint = closest_name(key, table_keys(table));
      throw ConfigError(source + ": unknown key '" + key + "'" +
                        (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    validate(*table.find(key), kv.value(), source + ": key '" + key + "'");
    cfg.values_[key] = kv.value();
    cfg.explicit_.insert(key);
  }
  return cfg;
}

Config Config::resolve(const ParamTable& table, const std::string& file,
                       const std::vector<std::pair<std::string, std::string>>& flags) {
  Config cfg = file.empty() ? from_json(table, json::object(), "defaults")
                            : from_json(table, read_json_file(file), file);
  for (const auto& p : table.params())
    if (p.flag_only && cfg.explicit_.erase(p.key))
      cfg.values_[p.key] = p.default_value;  // a file's value
  for (const auto& kv : flags) {
    const Param* p = table.find(kv.first);
    if (!p) throw ConfigError("unknown option '" + kv.first + "'");
    cfg.values_[p->key] = parse_flag_value(*p, kv.second);
    cfg.explicit_.insert(p->key);
  }
  return cfg;
}

json Config::given() const {
  json out = json::object();
  for (const auto& key : explicit_) out[key] = values_.at(key);
  return out;
}

void Config::set_explicit_keys(const std::set<std::string>& keys) {
  for (const auto& key : keys)
    if (!table_->find(key)) throw Error("config has no key '" + key + "'");
  explicit_ = keys;
}

void Config::apply_defaults(const json& defaults) {
  for (const auto& kv : defaults.items())
    if (!is_explicit(kv.key())) set(kv.key(), kv.value());
}

void Config::set(const std::string& key, const json& value) {
  const Param* p = table_->find(key);
  if (!p) throw ConfigError("unknown key '" + key + "'");
  validate(*p, value, "key '" + key + "'");
  values_[key] = value;
}

const json& Config::raw(const std::string& key) const {
  if (!table_->find(key)) throw Error("config has no key '" + key + "'");
  read_.insert(key);
  return values_.at(key);
}

double Config::number(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_number()) throw ConfigError("key '" + key + "' is not set");
  return v.get<double>();
}

int64_t Config::integer(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_number_integer()) throw ConfigError("key '" + key + "' is not set");
  return v.get<int64_t>();
}

const std::string& Config::text(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_string()) throw ConfigError("key '" + key + "' is not set");
  return v.get_ref<const std::string&>();
}

bool Config::boolean(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_boolean()) throw ConfigError("key '" + key + "' is not set");
  return v.get<bool>();
}

std::vector<double> Config::list(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_array()) throw ConfigError("key '" + key + "' is not set");
  return v.get<std::vector<double>>();
}

SpecReader::SpecReader(const json& spec, std::string what) : spec_(spec), what_(std::move(what)) {
  if (!spec_.is_object())
    throw ConfigError(what_ + ": expected a JSON object, got " + spec_.dump());
}

const json& SpecReader::value(const std::string& key) {
  used_.push_back(key);
  if (!spec_.contains(key)) throw ConfigError(what_ + ": missing field '" + key + "'");
  return spec_.at(key);
}

namespace {
/// The field `key` of `spec` (recorded in `used`), or nullptr when it is absent or null and the
/// caller has a default; ConfigError naming `what` when it is absent and there is none.
const json* field_of(const json& spec, std::vector<std::string>& used, const std::string& what,
                     const std::string& key, bool has_default) {
  used.push_back(key);
  if (spec.contains(key) && !spec.at(key).is_null()) return &spec.at(key);
  if (has_default) return nullptr;
  throw ConfigError(what + ": missing field '" + key + "'");
}
}  // namespace

double SpecReader::number(const std::string& key, std::optional<double> def) {
  const json* v = field_of(spec_, used_, what_, key, def.has_value());
  if (!v) return *def;
  if (!v->is_number() || !std::isfinite(v->get<double>()))
    throw ConfigError(what_ + ": field '" + key + "' must be a finite number, got " + v->dump());
  return v->get<double>();
}

std::vector<double> SpecReader::numbers(const std::string& key,
                                        std::optional<std::vector<double>> def) {
  const json* v = field_of(spec_, used_, what_, key, def.has_value());
  if (!v) return *def;
  if (v->is_number()) return {v->get<double>()};
  if (!v->is_array()) throw ConfigError(what_ + ": field '" + key + "' must be a list of numbers");
  std::vector<double> out;
  for (const auto& e : *v) {
    if (!e.is_number() || !std::isfinite(e.get<double>()))
      throw ConfigError(what_ + ": field '" + key + "' must be a list of finite numbers");
    out.push_back(e.get<double>());
  }
  return out;
}

std::string SpecReader::text(const std::string& key, std::optional<std::string> def) {
  const json* v = field_of(spec_, used_, what_, key, def.has_value());
  if (!v) return *def;
  if (!v->is_string()) throw ConfigError(what_ + ": field '" + key + "' must be a string");
  return v->get<std::string>();
}

int64_t SpecReader::integer(const std::string& key, std::optional<int64_t> def, int64_t min,
                            int64_t max) {
  const double v =
      number(key, def ? std::optional<double>(static_cast<double>(*def)) : std::nullopt);
  if (v != std::floor(v) || v < static_cast<double>(min) || v > static_cast<double>(max))
    throw ConfigError(what_ + ": field '" + key + "' must be an integer in [" +
                      std::to_string(min) + ", " + std::to_string(max) + "]");
  return static_cast<int64_t>(v);
}

bool SpecReader::flag(const std::string& key, std::optional<bool> def) {
  const json* v = field_of(spec_, used_, what_, key, def.has_value());
  if (!v) return *def;
  if (!v->is_boolean()) throw ConfigError(what_ + ": field '" + key + "' must be true or false");
  return v->get<bool>();
}

void SpecReader::finish() const {
  for (const auto& kv : spec_.items()) {
    if (std::find(used_.begin(), used_.end(), kv.key()) == used_.end()) {
      auto hint = closest_name(kv.key(), used_);
      throw ConfigError(what_ + ": unknown field '" + kv.key() + "'" +
                        (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
  }
}

}  // namespace ramflow
