// ramflow: the command-line tool. Subcommand dispatch and flag parsing only; the work is in the
// library (include/ramflow/jobs.h). Results (tables, or the summary as JSON with --json) go to
// stdout, progress and notes to stderr. Exit codes: 0 success, 2 bad usage, configuration or input
// (a missing or malformed file, an existing run directory), 1 any other error, 128 + N a run
// stopped by signal N after writing its checkpoint (130 for SIGINT, 143 for SIGTERM).
#include <algorithm>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "ramflow/ramflow.h"

namespace {

using ramflow::Config;
using ramflow::ParamTable;

struct Subcommand {
  std::string name;
  std::string help;
  ParamTable table;
  nlohmann::json (*run)(const Config&, ramflow::JobIO) = nullptr;
  CLI::App* app = nullptr;
  std::string config_file;
  bool json = false;                            // --json: the summary on stdout, as JSON
  std::map<std::string, std::string> text;      // flag values by key
  std::map<std::string, bool> switches;         // boolean flags by key
  std::map<std::string, CLI::Option*> options;  // by key
};

// A value as a flag would give it: text unquoted, lists comma-separated.
std::string value_text(const nlohmann::json& v, ramflow::ParamType type) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (type == ramflow::ParamType::kFloatList) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x.dump();
    return s;
  }
  return v.dump();
}
std::string default_text(const ramflow::Param& p) { return value_text(p.default_value, p.type); }

const char* type_name(ramflow::ParamType t) {
  switch (t) {
    case ramflow::ParamType::kInt:
      return "INT";
    case ramflow::ParamType::kFloat:
      return "NUM";
    case ramflow::ParamType::kString:
      return "TEXT";
    case ramflow::ParamType::kBool:
      return "";
    case ramflow::ParamType::kFloatList:
      return "NUM,..";
    case ramflow::ParamType::kJson:
      return "JSON";
  }
  return "";
}

void add_flags(Subcommand& sub) {
  sub.app->allow_extras();  // unknown flags are reported after parsing, with the closest known one
  sub.app
      ->add_option("--config", sub.config_file,
                   "JSON file of settings (keys as below with '_' for '-'); flags override it")
      ->check(CLI::Validator(
          [](std::string& path) -> std::string {
            std::error_code ec;
            if (std::filesystem::is_directory(path, ec))
              return path + " is a folder; --config takes a JSON file (a run's is RUN/config.json)";
            if (!std::filesystem::exists(path, ec)) return "no such file " + path;
            return "";
          },
          "FILE"));
  sub.app->add_flag("--json", sub.json,
                    "print the run's summary as JSON on stdout (the results tables go to stderr)");
  const bool has_methods =
      sub.table.find("method") != nullptr || sub.table.find("methods") != nullptr;
  for (const auto& p : sub.table.params()) {
    std::string help = p.help;
    const auto def = default_text(p);
    // A method's preset replaces the default of a shared key (lr, minibatches, ...): the help names
    // the value each method will use, so that `--help` never shows a number the run does not use.
    std::vector<std::string> presets;
    if (has_methods)
      for (const auto& name : ramflow::methods().names()) {
        const auto& preset = ramflow::methods().get(name).preset;
        if (preset.contains(p.key)) presets.push_back(name + " " + preset[p.key].dump());
      }
    if (!presets.empty())
      help += " [default: " + def +
              "; method presets, which a given value overrides: " + ramflow::join(presets) + "]";
    else if (!def.empty())
      help += " [default: " + def + "]";
    if (!p.choices.empty()) help += " {" + ramflow::join(p.choices) + "}";
    if (p.type == ramflow::ParamType::kBool) {
      sub.options[p.key] = sub.app->add_flag(p.flag(), sub.switches[p.key], help)->group(p.group);
    } else {
      sub.options[p.key] = sub.app->add_option(p.flag(), sub.text[p.key], help)
                               ->group(p.group)
                               ->allow_extra_args(false)
                               ->type_name(type_name(p.type));
    }
  }
}

// The flags of `sub` that were given, as (key, text) pairs for Config::resolve.
std::vector<std::pair<std::string, std::string>> given_flags(Subcommand& sub) {
  std::vector<std::pair<std::string, std::string>> flags;
  for (const auto& p : sub.table.params()) {
    if (sub.app->count(p.flag()) == 0) continue;
    if (p.type == ramflow::ParamType::kBool)
      flags.emplace_back(p.key, sub.switches[p.key] ? "true" : "false");
    else
      flags.emplace_back(p.key, sub.text[p.key]);
  }
  return flags;
}

// `--task T --help` (or `--method M --help`): each flag whose value the task's and method's presets
// change shows the value the run will use, not only the generic default.
void show_preset_values(Subcommand& sub) {
  auto given = [&](const char* key) {
    const auto it = sub.options.find(key);
    return it != sub.options.end() && it->second->count() > 0;
  };
  if (!given("task") && !given("method")) return;
  std::optional<Config> asked, run;
  try {
    asked = Config::resolve(sub.table, sub.config_file, given_flags(sub));
    run = ramflow::with_presets(*asked);
  } catch (const std::exception&) {
    return;  // a bad value: the run itself will name it
  }
  std::string who = "task " + run->text("task");
  if (sub.table.find("method")) who += ", method " + run->text("method");
  for (const auto& p : sub.table.params()) {
    const auto& value = run->raw(p.key);
    if (asked->is_explicit(p.key) || value == p.default_value) continue;
    CLI::Option* option = sub.options.at(p.key);
    option->description(option->get_description() + " [with " + who + ": " +
                        value_text(value, p.type) + "]");
  }
}

// CLI11's parse errors in our words where its own are obscure.
std::string parse_error_text(const CLI::ParseError& e) {
  const std::string what = e.what();
  // A flag given twice: "--lr: At Most 1 required but received 2".
  const std::string twice = ": At Most 1 required but received ";
  if (const size_t at = what.find(twice); at != std::string::npos)
    return what.substr(0, at) + ": given " + what.substr(at + twice.size()) +
           " times; give it once";
  return what;
}

void print_list() {
  auto show = [](const std::string& title, auto names, auto help) {
    std::cout << title << ":\n";
    for (const auto& n : names)
      std::cout << "  " << n << std::string(n.size() < 16 ? 16 - n.size() : 1, ' ') << help(n)
                << "\n";
  };
  show("tasks", ramflow::tasks().names(),
       [](const std::string& n) { return ramflow::tasks().help(n); });
  show("rewards", ramflow::rewards().names(),
       [](const std::string& n) { return ramflow::rewards().help(n); });
  show("methods", ramflow::methods().names(),
       [](const std::string& n) { return ramflow::methods().help(n); });
  show("samplers", ramflow::samplers().names(),
       [](const std::string& n) { return ramflow::samplers().help(n); });
  show("models", ramflow::models().names(),
       [](const std::string& n) { return ramflow::models().help(n); });
  show("decoders", ramflow::decoders().names(),
       [](const std::string& n) { return ramflow::decoders().help(n); });
}

}  // namespace

int main(int argc, char** argv) {
  ramflow::keep_freed_memory();
  // Every core unless --threads says otherwise (a job's set_threads keeps this count for 0).
  ramflow::set_threads(ramflow::available_cores());
  CLI::App app{
      "ramflow: RL post-training of flow-matching models with Reinforce Adjoint Matching,\n"
      "measured against the exact KL-optimal target."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  app.set_version_flag("--version", std::function<std::string()>(ramflow::version_text),
                       "ramflow's version, its LibTorch, instruction set and devices");
  std::vector<Subcommand> subs;
  auto add = [&](std::string name, std::string help, ParamTable table,
                 nlohmann::json (*run)(const Config&, ramflow::JobIO)) {
    Subcommand s;
    s.name = std::move(name);
    s.help = std::move(help);
    s.table = std::move(table);
    s.run = run;
    subs.push_back(std::move(s));
  };
  try {
    add("pretrain", "flow-matching pretraining of a base model", ramflow::pretrain_params(),
        ramflow::run_pretrain);
    add("train-classifier",
        "train an image classifier (a reward's judge or the evaluation classifier)",
        ramflow::train_classifier_params(), ramflow::run_train_classifier);
    add("finetune", "post-train a base model against a reward (RAM by default)",
        ramflow::finetune_params(), ramflow::run_finetune);
    add("sample", "draw samples from a checkpoint", ramflow::sample_params(), ramflow::run_sample);
    add("eval", "evaluate a checkpoint against the exact target", ramflow::eval_params(),
        ramflow::run_eval);
    add("compare", "methods x seeds on one task, measured against the exact target",
        ramflow::compare_params(), ramflow::run_compare);
  } catch (const std::exception& e) {
    std::cerr << "ramflow: internal error: " << e.what() << "\n";
    return 1;
  }
  for (auto& s : subs) {
    s.app = app.add_subcommand(s.name, s.help);
    add_flags(s);
  }
  auto* list = app.add_subcommand(
      "list", "list every registered task, reward, method, sampler, model and decoder");
  // ramflow launch [--nproc N] SUBCOMMAND [FLAGS]: the rest of the line is the ranks' command.
  ramflow::LaunchOptions launch_options;
  auto* launch = app.add_subcommand(
      "launch",
      "run a subcommand as N local processes of one data-parallel run (docs/distributed.md): "
      "ramflow launch --nproc 2 finetune [flags]");
  launch->prefix_command();
  launch->add_option("--nproc", launch_options.nproc, "processes (ranks) on this machine")
      ->capture_default_str();
  launch
      ->add_option("--master-addr", launch_options.master_addr,
                   "address of the store rank 0 serves")
      ->capture_default_str();
  launch->add_option("--master-port", launch_options.master_port, "its port (0: a free one)")
      ->capture_default_str();
  launch->add_option("--logs", launch_options.logs,
                     "folder of the output of ranks 1 .. N-1 (default: a temporary folder, "
                     "removed when every rank succeeds)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    for (auto& s : subs)
      if (s.app->parsed()) show_preset_values(s);
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string where = "ramflow";
    for (const auto* s : app.get_subcommands()) where += " " + s->get_name();
    std::cerr << where << ": " << parse_error_text(e) << " (see --help)\n";
    return 2;
  }
  if (list->parsed()) {
    print_list();
    return 0;
  }
  if (launch->parsed()) {
    std::vector<std::string> command = launch->remaining();
    if (command.empty() || command.front().rfind("-", 0) == 0) {
      std::cerr << "ramflow launch: error: "
                << (command.empty() ? "no subcommand given" : "unknown flag " + command.front())
                << " (usage: ramflow launch [--nproc N] SUBCOMMAND [FLAGS])\n";
      return 2;
    }
    std::error_code ec;
    command.insert(command.begin(), std::filesystem::read_symlink("/proc/self/exe", ec).string());
    if (ec) command.front() = argv[0];
    try {
      return ramflow::launch(command, launch_options, std::cerr);
    } catch (const ramflow::ConfigError& e) {
      std::cerr << "ramflow launch: error: " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "ramflow launch: error: " << e.what() << "\n";
      return 1;
    }
  }
  // Once per run: a virtual CPU can make OpenBLAS fall back to kernels far slower than the CPU
  // allows.
  if (const std::string note = ramflow::blas_kernel_note(); !note.empty())
    std::cerr << "ramflow: note: " << note << "\n";
  for (auto& s : subs) {
    if (!s.app->parsed()) continue;
    std::string where = "ramflow " + s.name;
    if (const auto extras = s.app->remaining(); !extras.empty()) {
      const std::string& arg = extras.front();
      if (arg.rfind("-", 0) != 0) {
        std::cerr << where << ": error: unexpected argument '" << arg
                  << "' (flags take the form --key value; see --help)\n";
        return 2;
      }
      std::string key = arg.substr(arg.find_first_not_of('-'));
      key = key.substr(0, key.find('='));
      std::replace(key.begin(), key.end(), '-', '_');
      if (const std::string* now = s.table.renamed_to(key)) {
        std::string flag = *now;
        std::replace(flag.begin(), flag.end(), '_', '-');
        std::cerr << where << ": error: " << arg << ": renamed --" << flag << " (see --help)\n";
        return 2;
      }
      std::vector<std::string> keys = {"config"};
      for (const auto& p : s.table.params()) keys.push_back(p.key);
      std::string hint = ramflow::closest_name(key, keys);
      std::replace(hint.begin(), hint.end(), '_', '-');
      std::cerr << where << ": error: " << arg << ": unknown flag"
                << (hint.empty() ? std::string() : " (did you mean --" + hint + "?)")
                << " (see --help)\n";
      return 2;
    }
    // Several processes (torchrun's variables, or ramflow launch): rank 0 reports, the others
    // write only their errors.
    std::optional<ramflow::Rendezvous> rendezvous;
    std::ostream quiet(nullptr);
    try {
      rendezvous = ramflow::Rendezvous::from_env();
    } catch (const std::exception& e) {
      std::cerr << where << ": error: " << e.what() << "\n";
      return 2;
    }
    const bool several = rendezvous && rendezvous->world_size > 1;
    if (several) where += " (rank " + std::to_string(rendezvous->rank) + ")";
    try {
      Config cfg = Config::resolve(s.table, s.config_file, given_flags(s));
      if (several && !s.table.find("dist_timeout"))
        throw ramflow::ConfigError("WORLD_SIZE=" + std::to_string(rendezvous->world_size) +
                                   ": only finetune runs on several processes");
      ramflow::CommunicatorPtr comm;
      if (several) {
        ramflow::CommunicatorOptions options;
        options.timeout =
            std::chrono::milliseconds(static_cast<int64_t>(1000 * cfg.number("dist_timeout")));
        options.backend = cfg.text("dist_backend");
        options.device = torch::Device(cfg.text("device"));
        comm = ramflow::connect(*rendezvous, options);
      }
      const bool follower = several && rendezvous->rank != 0;
      ramflow::JobIO io{follower ? quiet : std::cerr, !follower && ramflow::stderr_is_terminal(),
                        follower ? &quiet : (s.json ? nullptr : &std::cout), comm};
      // SIGINT / SIGTERM: a training job finishes its step, writes a checkpoint and stops (stop.h).
      ramflow::install_stop_handlers();
      const nlohmann::json summary = s.run(cfg, io);
      if (io.comm) io.comm->barrier();  // rank 0 serves the store: it ends last
      if (s.json && !follower) std::cout << summary.dump(2) << "\n";
      return 0;
    } catch (const ramflow::Interrupted& e) {
      std::cerr << where << ": " << e.what() << "\n";
      return 128 + e.signal();
    } catch (const ramflow::ConfigError& e) {
      std::cerr << where << ": error: " << e.what() << "\n";
      return 2;
    } catch (const ramflow::InputError& e) {
      std::cerr << where << ": error: " << e.what() << "\n";
      return 2;
    } catch (const c10::Error& e) {
      std::cerr << where << ": error: " << e.what_without_backtrace() << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << where << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  return 2;
}
