// Tests for include/ramflow/config.h (resolution order, typed validation, errors that name the
// culprit) and the text helpers of include/ramflow/strings.h that parsing and messages use.
#include <fstream>

#include <gtest/gtest.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/jobs.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

TEST(Strings, JoinSplitAndShapes) {
  EXPECT_EQ(join({"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(join({}), "");
  EXPECT_EQ(split(" a, b,,c ", ','), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(split(" , ", ',').empty());
  EXPECT_EQ(split(join({"x", "y"}), ','), (std::vector<std::string>{"x", "y"}));  // round trip
  EXPECT_EQ(shape_text({1, 16, 64}), "[1, 16, 64]");
  EXPECT_EQ(shape_text({}), "[]");  // a scalar's shape
}

ParamTable small_table() {
  ParamTable t;
  t.number("lr", 1e-4, "learning rate", 0, 10, true);
  t.integer("steps", 600, "steps", 1, 1000000);
  t.text("signal", "raw", "signal", {"raw", "centered"});
  t.list("center", json::array({4.0, 0.0}), "centre");
  t.boolean("overwrite", false, "overwrite");
  return t;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, DefaultsThenFileThenFlags) {
  auto t = small_table();
  auto file = write_temp("cfg_order.json", R"({"lr": 0.5, "steps": 10})");
  auto cfg = Config::resolve(t, file, {{"steps", "20"}, {"center", "1,-2.5"}});
  EXPECT_DOUBLE_EQ(cfg.number("lr"), 0.5);  // from the file
  EXPECT_EQ(cfg.integer("steps"), 20);      // the flag overrides the file
  EXPECT_EQ(cfg.text("signal"), "raw");     // default
  EXPECT_EQ(cfg.list("center"), (std::vector<double>{1.0, -2.5}));
  EXPECT_EQ(cfg.values().size(), t.params().size());  // every key written out
}

TEST(ConfigTest, UnknownKeyInFileSuggestsTheClosest) {
  auto t = small_table();
  auto file = write_temp("cfg_unknown.json", R"({"lrr": 0.5})");
  auto msg = error_of([&] { Config::resolve(t, file, {}); });
  EXPECT_NE(msg.find("unknown key 'lrr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'lr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
}

TEST(ConfigTest, FlagErrorsNameTheFlag) {
  auto t = small_table();
  EXPECT_NE(error_of([&] {
              Config::resolve(t, "", {{"lr", "fast"}});
            }).find("--lr: expected a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              Config::resolve(t, "", {{"lr", "0"}});
            }).find("--lr: 0 is out of range (must be > 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              Config::resolve(t, "", {{"steps", "2.5"}});
            }).find("--steps: expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              Config::resolve(t, "", {{"signal", "wild"}});
            }).find("'wild' is not one of: raw, centered"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              Config::resolve(t, "", {{"center", "1,x"}});
            }).find("--center"),
            std::string::npos);
}

TEST(ConfigTest, FileTypeErrorsAndBadJson) {
  auto t = small_table();
  auto typed = write_temp("cfg_type.json", R"({"steps": "many"})");
  EXPECT_NE(
      error_of([&] { Config::resolve(t, typed, {}); }).find("key 'steps': expected an integer"),
      std::string::npos);
  auto broken = write_temp("cfg_broken.json", "{\"lr\": ");
  EXPECT_NE(error_of([&] { Config::resolve(t, broken, {}); }).find("not valid JSON"),
            std::string::npos);
  EXPECT_THROW(Config::resolve(t, "/nonexistent/dir/cfg.json", {}), InputError);
  // Found by fuzz/config_fuzz.cpp: a number beyond any double escaped as nlohmann's out_of_range.
  auto huge = write_temp("cfg_huge.json", R"({"lr": 1e99999})");
  EXPECT_NE(error_of([&] { Config::resolve(t, huge, {}); }).find("a number is out of range"),
            std::string::npos);
}

TEST(ConfigTest, ARepeatedKeyIsAnError) {
  // nlohmann keeps the last of two equal keys; a config must not silently drop the first.
  auto t = small_table();
  auto twice = write_temp("cfg_twice.json", R"({"steps": 5, "lr": 0.1, "steps": 7})");
  EXPECT_NE(error_of([&] { Config::resolve(t, twice, {}); }).find("key 'steps' appears twice"),
            std::string::npos);
  // Equal keys in different objects are fine; a repeat inside a nested object is not.
  EXPECT_NO_THROW(parse_json_strict(R"({"a": {"x": 1}, "b": {"x": 2}, "x": 3})", "ok"));
  EXPECT_THROW(parse_json_strict(R"({"a": {"x": 1, "y": 2, "x": 3}})", "nested"), ConfigError);
  EXPECT_THROW(parse_json_strict(R"([{"k": 1}, {"k": 2, "k": 3}])", "array"), ConfigError);
  EXPECT_NO_THROW(parse_json_strict(R"([{"k": 1}, {"k": 2}])", "array"));
}

TEST(ConfigTest, SpecReaderRejectsUnknownFields) {
  json spec = {{"type", "bump"}, {"centre", {1, 2}}};
  SpecReader r(spec, "reward 'bump'");
  r.text("type");
  r.numbers("center", std::vector<double>{0.0});
  auto msg = error_of([&] { r.finish(); });
  EXPECT_NE(msg.find("reward 'bump': unknown field 'centre' (did you mean 'center'?)"),
            std::string::npos)
      << msg;
}

TEST(ConfigTest, FinetuneTableHasTheDocumentedFlags) {
  auto t = finetune_params();
  for (const char* key : {"task", "reward", "reward_center", "reward_scale", "multiplier",
                          "group_size", "draws", "rollout_steps", "lr", "steps", "seed", "out",
                          "ram_signal", "ram_target_copy", "time_dist"})
    EXPECT_NE(t.find(key), nullptr) << key;
  EXPECT_EQ(t.find("reward_center")->flag(), "--reward-center");
  // The exact command of the issue resolves without error.
  auto cfg = Config::resolve(t, "",
                             {{"task", "ring"},
                              {"reward", "bump"},
                              {"reward_center", "4,0"},
                              {"reward_scale", "2.5"},
                              {"multiplier", "5"},
                              {"group_size", "32"},
                              {"draws", "4"},
                              {"rollout_steps", "25"},
                              {"lr", "1e-4"},
                              {"steps", "600"},
                              {"seed", "0"},
                              {"out", "DIR"}});
  EXPECT_EQ(cfg.raw("reward"), "bump");
  EXPECT_DOUBLE_EQ(cfg.number("lr"), 1e-4);
}

// Keys renamed since an earlier version: a config file or run directory with the old names resolves
// to the new keys; both names at once are refused.
TEST(ConfigTest, RenamedKeysOfEarlierVersionsStillRead) {
  const auto t = finetune_params();
  ASSERT_NE(t.renamed_to("group"), nullptr);
  EXPECT_EQ(*t.renamed_to("group"), "group_size");
  EXPECT_EQ(*t.renamed_to("signal"), "ram_signal");
  EXPECT_EQ(t.renamed_to("groups"), nullptr);
  const auto cfg = Config::from_json(t,
                                     {{"group", 8},
                                      {"signal", "centered"},
                                      {"target_copy", "ema"},
                                      {"std_scope", "step"},
                                      {"std_eps", 0.01}},
                                     "old.json");
  EXPECT_EQ(cfg.integer("group_size"), 8);
  EXPECT_EQ(cfg.text("ram_signal"), "centered");
  EXPECT_EQ(cfg.text("ram_target_copy"), "ema");
  EXPECT_EQ(cfg.text("ram_std_scope"), "step");
  EXPECT_DOUBLE_EQ(cfg.number("ram_std_eps"), 0.01);
  EXPECT_TRUE(cfg.is_explicit("group_size"));
  EXPECT_NE(error_of([&] {
              Config::from_json(t, {{"group", 8}, {"group_size", 4}}, "both.json");
            }).find("both.json: 'group' and 'group_size' are one key (renamed)"),
            std::string::npos);
}

}  // namespace
}  // namespace ramflow
