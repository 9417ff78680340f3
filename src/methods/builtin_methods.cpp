// The list of built-in methods: one line per method.
#include <algorithm>
#include <map>

#include <torch/torch.h>

#include "ramflow/adjoint_matching.h"
#include "ramflow/awm.h"
#include "ramflow/config.h"
#include "ramflow/draft.h"
#include "ramflow/eam.h"
#include "ramflow/elbo_pg.h"
#include "ramflow/flow_grpo.h"
#include "ramflow/nft.h"
#include "ramflow/ram.h"
#include "ramflow/ram_anneal.h"
#include "ramflow/ram_tilt.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

void register_builtin_methods(Registry<MethodInfo>& r) {
  // Presets: each method's learning rate from the sweep in docs/tuning.md (bench/tune_methods.sh).
  r.add("ram", {RAM::add_params, RAM::from_config, {{"lr", 3e-3}}},
        "Reinforce Adjoint Matching (arXiv 2605.10759)");
  r.add("ram-anneal", {RAMAnneal::add_params, RAMAnneal::from_config, {{"lr", 3e-3}}},
        "RAM with the tilt annealed in stages, each against the previous stage's model");
  r.add(
      "ram-tilt", {RAMTilt::add_params, RAMTilt::from_config, {{"lr", 1e-3}}},
      "RAM with the exact tilt: self-normalised e^{(m/S) r} weights, in stages from frozen models");
  // grpo_kl 0.2 with the KL averaged over coordinates is the 2-D sweep's 0.1 on the summed KL.
  r.add("flow-grpo",
        {FlowGRPO::add_params,
         FlowGRPO::from_config,
         {{"lr", 3e-4}, {"grpo_kl", 0.2}, {"minibatches", 2}}},
        "Flow-GRPO: SDE rollouts, clipped per-step ratios (arXiv 2505.05470)");
  r.add("adjoint-matching",
        {AdjointMatching::add_params, AdjointMatching::from_config, {{"lr", 1e-2}}},
        "Adjoint Matching: memoryless SDE, lean adjoint (arXiv 2409.08861)");
  r.add("nft",
        {NFT::add_params,
         NFT::from_config,
         {{"lr", 3e-4}, {"nft_kl", 0.1}, {"old_decay", 0.5}, {"old_ramp", 0.001}}},
        "DiffusionNFT: implicit positive and negative policies (arXiv 2509.16117)");
  r.add("draft", {DRaFT::add_params, DRaFT::from_config, {{"lr", 1e-4}}},
        "DRaFT-K: reward gradient through the last K steps");
  r.add("eam", {EAM::add_params, EAM::from_config, {{"lr", 1e-3}}},
        "Efficient Adjoint Matching, reconstructed: linear reference, closed-form adjoint (arXiv "
        "2605.11480)");
  r.add("elbo-pg", {ElboPG::add_params, ElboPG::from_config, {{"lr", 2e-4}, {"grad_clip", 1.0}}},
        "ELBO policy gradient, reconstructed: ODE rollouts, ELBO likelihood of the endpoint (arXiv "
        "2602.04663)");
  r.add(
      "awm",
      {AWM::add_params, AWM::from_config, {{"lr", 3e-4}, {"old_decay", 0.3}, {"old_ramp", 0.001}}},
      "Advantage Weighted Matching: advantage-weighted flow matching (arXiv 2509.25050)");
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

namespace {

void add_forward_process_params(ParamTable& t) {
  t.integer("draws", 4, "K: (t, eps) draws per endpoint, evaluated in one batched pass", 1, 4096);
  t.text("time_dist", "uniform", "training-time distribution p(t)",
         {"uniform", "power", "logit_normal"});
  t.number("time_alpha", 1.0, "power law p(t) ∝ t^alpha", -1, 100, true);
  t.number("time_mean", 0.0, "logit-normal mean", -10, 10);
  t.number("time_std", 1.0, "logit-normal std", 0, 10, true);
}

// Every method's keys, the shared ones, and multiplier (the one key outside them that methods
// read): a table from whose defaults each method can be built.
const ParamTable& method_table() {
  static const ParamTable all = [] {
    ParamTable t;
    add_forward_process_params(t);
    t.number("multiplier", 1.0, "", 0, 1e9);
    for (const auto& name : methods().names()) methods().get(name).add_params(t);
    return t;
  }();
  return all;
}

}  // namespace

std::vector<std::string> methods_where(const std::function<bool(const Method&)>& pred) {
  const Config defaults = Config::from_json(method_table(), nlohmann::json::object(), "defaults");
  std::vector<std::string> out;
  for (const auto& name : methods().names())
    if (pred(*methods().get(name).make(defaults))) out.push_back(name);
  return out;
}

void add_method_params(ParamTable& t) {
  // The heading names the methods that read the shared keys, found from the registry.
  static const std::string readers = join(methods_reading("draws", method_table()));
  t.group("Forward-process training (methods " + readers + ")");
  add_forward_process_params(t);
  for (const auto& name : methods().names()) methods().get(name).add_params(t);
}

std::vector<std::string> methods_reading(const std::string& key, const ParamTable& table) {
  std::vector<std::string> out;
  for (const auto& name : methods().names())
    if (method_keys(name, table).count(key)) out.push_back(name);
  return out;
}

std::set<std::string> method_keys(const std::string& method, const ParamTable& table) {
  const Config defaults = Config::from_json(table, nlohmann::json::object(), "defaults");
  defaults.clear_reads();
  methods().get(method).make(defaults);
  return defaults.keys_read();
}

void check_method_keys(const Config& cfg, const std::vector<std::string>& chosen) {
  std::map<std::string, std::vector<std::string>> readers;  // key -> the methods that read it
  for (const auto& name : methods().names())
    for (const auto& key : method_keys(name, cfg.table())) readers[key].push_back(name);
  for (const auto& [key, names] : readers) {
    if (key == "multiplier") continue;  // it also fixes the evaluation's exact target
    if (!cfg.is_explicit(key) || cfg.raw(key) == cfg.table().find(key)->default_value) continue;
    bool used = false;
    for (const auto& c : chosen)
      used = used || std::find(names.begin(), names.end(), c) != names.end();
    if (used) continue;
    throw ConfigError(cfg.table().find(key)->flag() + " is an option of method " + join(names) +
                      ", not of " + join(chosen));
  }
}

TimeDistribution time_distribution_from(const Config& cfg) {
  TimeDistribution time;
  time.kind = cfg.text("time_dist");
  time.alpha = cfg.number("time_alpha");
  time.mean = cfg.number("time_mean");
  time.std = cfg.number("time_std");
  return time;
}

}  // namespace ramflow
