// Fuzz target: the config parser. The input is a config file's text: parse_json_strict (JSON with
// repeated keys refused), then Config::from_json against a table with a parameter of every type,
// then every typed accessor. Any input either resolves or is refused with a ConfigError.
#include "fuzz_target.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"

namespace {
const ramflow::ParamTable& table() {
  static const ramflow::ParamTable t = [] {
    ramflow::ParamTable t;
    t.group("Fuzz");
    t.integer("steps", 10, "an integer", 1, 1000000);
    t.number("lr", 1e-3, "a number", 0, 10, true);
    t.number("optional", nullptr, "an optional number", -1e9, 1e9);
    t.text("method", "ram", "a choice", {"ram", "nft", "draft"});
    t.text("name", nullptr, "free text");
    t.boolean("flag", false, "a switch");
    t.list("center", nullptr, "a list of numbers");
    t.object("spec", nullptr, "a JSON object");
    return t;
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto json = ramflow::parse_json_strict(text, "fuzz.json");
    const auto cfg = ramflow::Config::from_json(table(), json, "fuzz.json");
    cfg.integer("steps");
    cfg.number("lr");
    cfg.text("method");
    cfg.boolean("flag");
    if (cfg.is_set("optional")) cfg.number("optional");
    if (cfg.is_set("name")) cfg.text("name");
    if (cfg.is_set("center")) cfg.list("center");
    cfg.raw("spec");
    for (const auto& p : table().params()) ramflow::parse_flag_value(p, text.substr(0, 64));
  } catch (const ramflow::ConfigError&) {
  } catch (const std::exception& e) {
    ramflow::fuzz::finding("config", e);
  }
  return 0;
}
