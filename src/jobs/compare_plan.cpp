// What `ramflow compare` runs: its methods, their variants and the target's source (see
// src/jobs/compare.h).
#include <algorithm>

#include <torch/torch.h>

#include "jobs/compare.h"
#include "jobs/resolve.h"
#include "ramflow/errors.h"
#include "ramflow/method.h"
#include "ramflow/strings.h"
#include "ramflow/trainer.h"

namespace ramflow::jobs {
namespace {

using Sweep = std::pair<std::string, std::vector<nlohmann::json>>;

// Parses `sweep` ("k=v1,v2;k2=...") into keys and typed, validated values.
std::vector<Sweep> parse_sweeps(const Config& cfg) {
  std::vector<Sweep> out;
  if (!cfg.is_set("sweep")) return out;
  for (const std::string& part : split(cfg.text("sweep"), ';')) {
    const auto eq = part.find('=');
    if (eq == std::string::npos) throw ConfigError("--sweep: '" + part + "' is not KEY=V1,V2,...");
    std::string key = part.substr(0, eq);
    std::replace(key.begin(), key.end(), '-', '_');
    if (const std::string* now = cfg.table().renamed_to(key))
      throw ConfigError("--sweep: '" + key + "' was renamed '" + *now + "'");
    const Param* p = cfg.table().find(key);
    if (!p) {
      std::vector<std::string> keys;
      for (const auto& q : cfg.table().params()) keys.push_back(q.key);
      const auto hint = closest_name(key, keys);
      throw ConfigError("--sweep: unknown key '" + key + "'" +
                        (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    std::vector<nlohmann::json> values;
    for (const auto& text : split(part.substr(eq + 1)))
      values.push_back(parse_flag_value(*p, text));
    if (values.empty()) throw ConfigError("--sweep: no values for '" + key + "'");
    for (const auto& [k, v] : out)
      if (k == key) throw ConfigError("--sweep: '" + key + "' is swept twice");
    out.emplace_back(key, std::move(values));
  }
  return out;
}

std::string value_text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// The config of method `name` with the swept values `combo`: presets first (the one precedence),
// then the swept values, which win over them.
Config variant_config(const Config& cfg, const std::string& name, const nlohmann::json& combo) {
  Config c = cfg;
  apply_presets(c, name);
  for (const auto& [k, v] : combo.items()) c.set(k, v);
  return c;
}

// The methods of --methods, checked; the default list drops those that differentiate a reward that
// is not differentiable.
std::vector<std::string> chosen_methods(const Config& cfg, const Reward& reward, JobIO io) {
  auto names = split(cfg.text("methods"));
  if (names.empty()) throw ConfigError("--methods: no method given");
  for (size_t i = 0; i < names.size(); ++i) {
    if (!methods().contains(names[i]))
      throw ConfigError("--methods: unknown method '" + names[i] + "' (choose from " +
                        methods().joined_names() + ")");
    if (std::find(names.begin(), names.begin() + i, names[i]) != names.begin() + i)
      throw ConfigError("--methods: '" + names[i] + "' is listed twice");
  }
  if (cfg.is_explicit("methods") || reward.differentiable()) return names;
  std::vector<std::string> kept;
  for (const auto& name : names) {
    if (methods()
            .get(name)
            .make(variant_config(cfg, name, nlohmann::json::object()))
            ->needs_reward_gradient())
      io.log << "compare: skipping " << name << ": it differentiates the reward, and reward '"
             << reward.spec().value("type", std::string("?")) << "' is not differentiable\n";
    else
      kept.push_back(name);
  }
  return kept;
}

// The label of the target variant: the variant of that label; else the target method's variant
// whose swept values are the ones it runs with unswept (its preset or default, e.g. flow-grpo's
// grpo_kl 0.1); else its first.
std::string target_label(const Config& cfg, const std::vector<Variant>& variants,
                         const std::string& wanted) {
  for (const auto& v : variants)
    if (v.label == wanted) return v.label;
  if (methods().contains(wanted)) {
    const Config plain = variant_config(cfg, wanted, nlohmann::json::object());
    for (const auto& v : variants) {
      bool same = v.method == wanted;
      for (const auto& [k, value] : v.sweep.items()) same = same && plain.raw(k) == value;
      if (same) return v.label;
    }
  }
  for (const auto& v : variants)
    if (v.method == wanted) return v.label;
  throw ConfigError("--target-method: '" + wanted +
                    "' is not among --methods; add it or give --target-reward");
}

}  // namespace

const Variant& ComparePlan::variant(const std::string& label) const {
  for (const auto& v : variants)
    if (v.label == label) return v;
  throw std::out_of_range("compare: no variant '" + label + "'");
}

ComparePlan plan_compare(const Config& cfg, const Task& task, const Reward& reward, JobIO io) {
  ComparePlan plan;
  plan.methods = chosen_methods(cfg, reward, io);
  check_method_keys(cfg, plan.methods);
  // Each method's variants: the cross product of the sweeps that apply to it. A method key applies
  // to the methods that read it; a rollout or optimisation key to every method.
  const auto sweeps = parse_sweeps(cfg);
  std::map<std::string, size_t> sweep_users;  // key -> how many of the methods it applies to
  for (const auto& name : plan.methods) {
    const auto reads = method_keys(name, cfg.table());
    std::vector<const Sweep*> mine;
    for (const auto& sw : sweeps) {
      const std::string& group = cfg.table().find(sw.first)->group;
      if (reads.count(sw.first) || group == "Rollouts" || group == "Optimisation") {
        mine.push_back(&sw);
        ++sweep_users[sw.first];
      }
    }
    std::vector<nlohmann::json> combos = {nlohmann::json::object()};
    for (const auto* sw : mine) {
      std::vector<nlohmann::json> next;
      for (const auto& c : combos)
        for (const auto& v : sw->second) {
          auto n = c;
          n[sw->first] = v;
          next.push_back(n);
        }
      combos = next;
    }
    for (const auto& combo : combos) {
      std::string label = name, sep = " ";
      for (const auto* sw : mine) {
        label += sep + sw->first + "=" + value_text(combo[sw->first]);
        sep = ", ";
      }
      Config c = variant_config(cfg, name, combo);
      auto probe = methods().get(name).make(c);  // validates the method's keys
      Trainer::check(trainer_options_from(c, task), *probe, reward);
      plan.variants.push_back(Variant{label, name, combo, std::move(c), probe->options()});
    }
  }
  for (const auto& sw : sweeps)
    if (sweep_users[sw.first] == 0)
      throw ConfigError("--sweep: '" + sw.first +
                        "' is neither read by any of --methods nor a rollout or optimisation key");
  plan.fixed_target = cfg.is_set("target_reward");
  plan.target_variant = cfg.text("target_method");
  // Without the default target method (flow-grpo) among --methods, and none asked for, the target
  // is 0.9 of the way from the base reward to reward_optimal: meaningful for any set of methods.
  if (!plan.fixed_target && !cfg.is_explicit("target_method")) {
    bool present = false;
    for (const auto& v : plan.variants)
      present = present || v.method == plan.target_variant || v.label == plan.target_variant;
    plan.fraction_target = !present;
  }
  if (!plan.fixed_target && !plan.fraction_target)
    plan.target_variant = target_label(cfg, plan.variants, plan.target_variant);
  return plan;
}

}  // namespace ramflow::jobs
