// The words task and its model: the character tokens, the character encoder, SD3 with it
// (sd3_char), and the task's word lists, images and conditions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "helpers.h"

#include "ramflow/assets.h"
#include "ramflow/char_encoder.h"
#include "ramflow/char_reader.h"
#include "ramflow/errors.h"
#include "ramflow/evaluator.h"
#include "ramflow/grader.h"
#include "ramflow/image_metrics.h"
#include "ramflow/jobs.h"
#include "ramflow/method.h"
#include "ramflow/reward.h"
#include "ramflow/safetensors.h"
#include "ramflow/sd3_char.h"
#include "ramflow/strings.h"
#include "ramflow/task.h"
#include "ramflow/words_task.h"

namespace ramflow {
namespace {

TEST(CharTokens, LettersAreOneToTwentySixThenPadding) {
  const auto tokens = char_tokens({"CAT", "", "zebra"}, CharEncoderOptions().max_length(5));
  const auto expected =
      torch::tensor({3, 1, 20, 0, 0, 0, 0, 0, 0, 0, 26, 5, 2, 18, 1}, torch::kLong).view({3, 5});
  EXPECT_TRUE(torch::equal(tokens, expected)) << tokens;
}

TEST(CharTokens, TooLongOrNotALetterNamesThePrompt) {
  const auto o = CharEncoderOptions().max_length(4);
  try {
    char_tokens({"HORSE"}, o);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'HORSE' has 5 letters"), std::string::npos) << e.what();
  }
  try {
    char_tokens({"A B"}, o);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'A B': character ' '"), std::string::npos) << e.what();
  }
}

TEST(CharEncoder, ShapesPooledRowAndRowsIndependent) {
  const auto o = CharEncoderOptions().max_length(6).dim(8).layers(2).heads(2);
  CharEncoder encoder(o);
  Rng rng(3);
  encoder->reset_parameters(rng);
  const auto tokens = char_tokens({"CAT", "DOG", "CAT", ""}, o);
  const auto out = encoder->forward(tokens);
  EXPECT_EQ(out.context.sizes(), (std::vector<int64_t>{4, 7, 8}));
  EXPECT_TRUE(torch::equal(out.pooled, out.context.select(1, 0)));
  // A row depends on its own tokens alone: the same word gives the same rows in any batch.
  EXPECT_TRUE(torch::allclose(out.context[0], out.context[2], 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(out.context[0], out.context[1], 1e-3, 1e-3));
  const auto alone = encoder->forward(tokens.narrow(0, 1, 1));
  EXPECT_TRUE(torch::allclose(alone.context[0], out.context[1], 1e-5, 1e-6));
}

TEST(CharEncoder, BadOptionsNameTheField) {
  EXPECT_THROW(CharEncoderOptions::from_json({{"dim", 10}, {"heads", 3}}, "enc"), ConfigError);
  EXPECT_THROW(CharEncoderOptions::from_json({{"alphabet", 27}}, "enc"), ConfigError);
  EXPECT_THROW(CharEncoderOptions::from_json({{"width", 8}}, "enc"), ConfigError);
}

// adaLN-Zero: every block starts as the identity and the output projection at zero, so the first
// prediction is exactly v = 0; the encoder is what post-training keeps frozen.
TEST(SD3Char, StartsAtZeroVelocityAndFreezesItsEncoder) {
  auto model = make_velocity_field(testing::tiny_sd3_char_spec(5), 1);
  Rng rng(2);
  const auto x = rng.randn({3, 1, 4, 8}), t = rng.rand({3});
  const auto cond =
      Condition(torch::arange(3),
                {{"tokens", char_tokens({"AB", "CDE", ""}, CharEncoderOptions().max_length(5))}});
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(x, t, cond).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(model->frozen_in_post_training(), std::vector<std::string>{"text_encoder."});
  int64_t encoder_params = 0;
  for (const auto& p : model->named_parameters())
    if (p.key().rfind("text_encoder.", 0) == 0) ++encoder_params;
  EXPECT_GT(encoder_params, 0);
  // Widths that do not match the encoder's are an error naming both.
  auto bad = testing::tiny_sd3_char_spec(5);
  bad["config"]["joint_attention_dim"] = 6;
  EXPECT_THROW(make_velocity_field(bad), ConfigError);
}

TEST(Strings, FnvOneAIsTheStandardHash) {
  EXPECT_EQ(fnv1a(""), 14695981039346656037ULL);
  EXPECT_EQ(fnv1a("a"), 0xaf63dc4c8601ec8cULL);
}

// A word list of its own: only words of 3-5 letters a-z count, upper-cased and unique; a word is
// held out exactly when its hash is 0 mod held_out_every.
TEST(WordsTask, WordListsSplitByHash) {
  const std::string path = testing::fresh_temp_dir("words_list") + ".txt";
  std::vector<std::string> kept;
  {
    std::ofstream out(path);
    out << "Paris\nit's\nab\nelephant\ncafe\ncafe\n";  // skipped: capital, apostrophe, short, long
    for (char a = 'a'; a <= 'z'; ++a)
      for (char b = 'a'; b <= 'z'; b += 5) {
        const std::string w = std::string(1, a) + b + "x";
        out << w << "\n";
        kept.push_back(w);
      }
  }
  kept.push_back("cafe");
  const TaskPtr task = make_task("words", {{"words", path}, {"held_out_every", 4}});
  ASSERT_EQ(task->condition_count(), static_cast<int64_t>(kept.size()));
  std::set<std::string> seen;
  int64_t held_out = 0;
  const auto eval_ids = task->evaluation_conditions(1000).id();
  const int64_t first_held_out = eval_ids.min().item<int64_t>();
  for (int64_t id = 0; id < task->condition_count(); ++id) {
    const std::string w = task->condition_text(id);
    seen.insert(w);
    const bool is_held_out = id >= first_held_out;
    EXPECT_EQ(is_held_out, fnv1a(w) % 4 == 0) << w;
    held_out += is_held_out;
  }
  for (auto w : kept) {
    for (char& c : w) c = static_cast<char>(c - 'a' + 'A');
    EXPECT_EQ(seen.count(w), 1u) << w;
  }
  EXPECT_GT(held_out, 0);
  EXPECT_EQ(std::get<0>(torch::_unique(eval_ids)).numel(), held_out);  // every held-out word
  // Training draws never ask for a held-out word.
  Rng rng(1);
  EXPECT_LT(task->sample_conditions(500, rng).id().max().item<int64_t>(), first_held_out);
}

TEST(WordsTask, ImagesInkInsideTheMarginConditionsSpellTheWord) {
  const TaskPtr task = make_task("words");
  Rng a(5), b(5);
  Condition cond;
  const auto x = task->sample_data(40, a, {}, &cond);  // [40, 1, 16, 64]
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{40, 1, 16, 64}));
  EXPECT_TRUE(torch::equal(x, task->sample_data(40, b)));  // a function of the stream
  EXPECT_GE(x.min().item<float>(), -1.0f);
  EXPECT_LE(x.max().item<float>(), 1.0f);
  // A pixel of margin on every side: the border is ground (-1); every image has ink.
  for (const auto& border : {x.select(2, 0), x.select(2, 15), x.select(3, 0), x.select(3, 63)})
    EXPECT_EQ(border.max().item<float>(), -1.0f);
  EXPECT_GT(x.flatten(1).amax(1).min().item<float>(), 0.3f);  // intensity >= 0.7: 2 0.7 - 1 = 0.4
  // The tokens spell each sample's word; the null condition is the empty prompt.
  const auto tokens = cond.at("tokens");
  for (int64_t i = 0; i < cond.size(); ++i) {
    std::string w;
    for (int64_t j = 0; j < tokens.size(1); ++j)
      if (tokens[i][j].item<int64_t>() > 0)
        w += static_cast<char>('A' + tokens[i][j].item<int64_t>() - 1);
    EXPECT_EQ(w, cond.text(i));
    EXPECT_GE(w.size(), 3u);
    EXPECT_LE(w.size(), 5u);
  }
  EXPECT_EQ(task->null_condition().at("tokens").abs().sum().item<int64_t>(), 0);
}

// The data is legible: Tesseract (the ocr reward) reads the held-out test images.
TEST(WordsTask, TheOcrRewardReadsTheData) {
  const TaskPtr task = make_task("words");
  const auto split = task->test_split();
  ASSERT_TRUE(split.has_value());
  const auto x = split->x.narrow(0, 0, 48);
  const auto cond = split->cond.slice(0, 48);
  const auto r = make_reward({{"type", "ocr"}}, task->dim())->score(x, cond);
  EXPECT_GT(r.mean().item<double>(), 0.9) << r;
}

// jitter 0: every word centred; with one font, one size and full intensity, a word is always the
// same image (the test split asks for each held-out word eval_repeats = 4 times in a row).
TEST(WordsTask, JitterZeroCentresEveryWord) {
  const TaskPtr task =
      make_task("words", {{"fonts", {"/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"}},
                          {"min_size", 14},
                          {"max_size", 14},
                          {"min_intensity", 1.0},
                          {"jitter", 0}});
  const auto split = task->test_split();
  ASSERT_GE(split->x.size(0), 20);
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(split->cond.text(i), split->cond.text(i / 4 * 4));
    EXPECT_TRUE(torch::equal(split->x[i], split->x[i / 4 * 4])) << i;
  }
  EXPECT_NE(split->cond.text(0), split->cond.text(4));
  // The ink's columns are centred: as many ground columns left as right, give or take one.
  for (int64_t i = 0; i < 20; ++i) {
    const auto cols = split->x[i][0].amax(0).gt(-1.0).nonzero().flatten();  // ink columns
    const int64_t left = cols.min().item<int64_t>(), right = 63 - cols.max().item<int64_t>();
    EXPECT_LE(std::abs(left - right), 1) << split->cond.text(i);
  }
  EXPECT_THROW(make_task("words", {{"jitter", -2}}), ConfigError);
}

// Any 1-10 letters are a prompt (lower case read as upper case); other text is refused by name.
TEST(WordsTask, PromptsOfAnyLettersAreConditions) {
  const TaskPtr task = make_task("words");
  const auto cond = task->prompt_conditions({"zebra", "QI", "ABCDEFGHIJ"});
  ASSERT_EQ(cond.size(), 3);
  EXPECT_EQ(cond.text(0), "ZEBRA");
  EXPECT_EQ(cond.text(2), "ABCDEFGHIJ");
  EXPECT_TRUE(torch::equal(cond.at("tokens"), char_tokens({"ZEBRA", "QI", "ABCDEFGHIJ"},
                                                          CharEncoderOptions().max_length(10))));
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{""}, {"C4T"}, {"TWO WORDS"}, {"ABCDEFGHIJK"}})
    EXPECT_THROW(task->prompt_conditions(bad), ConfigError) << bad[0];
  EXPECT_THROW(make_task("ring")->prompt_conditions({"CAT"}), ConfigError);
}

TEST(WordsTask, BadInputNamesTheFileOrField) {
  try {
    make_task("words", {{"words", "/nonexistent/words.txt"}});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/words.txt"), std::string::npos);
  }
  try {
    make_task("words", {{"fonts", {"/nonexistent/font.ttf"}}});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/font.ttf"), std::string::npos);
  }
  EXPECT_THROW(make_task("words", {{"min_letters", 6}, {"max_letters", 4}}), ConfigError);
  EXPECT_THROW(make_task("words", {{"heigth", 16}}), ConfigError);
}

TEST(CharReader, ColumnsOfLogProbabilitiesAndFeatures) {
  CharReader reader{CharReaderOptions()};
  Rng rng(1);
  reader->reset_parameters(rng);
  const auto x = rng.rand({3, 1, 16, 64}) * 2 - 1;
  const auto lp = reader->forward(x);
  EXPECT_EQ(lp.sizes(), (std::vector<int64_t>{3, 32, 27}));
  EXPECT_TRUE(torch::allclose(lp.exp().sum(-1), torch::ones({3, 32}), 1e-5, 1e-5));
  EXPECT_EQ(reader->features(x).sizes(), (std::vector<int64_t>{3, 128}));
  EXPECT_EQ(reader->read(x).size(), 3u);
  EXPECT_THROW(reader->forward(rng.rand({3, 1, 16, 60})), c10::Error);
  EXPECT_THROW(CharReaderOptions::from_json({{"height", 12}}), ConfigError);
}

// Training lowers the CTC loss, and a saved reader reads as the one it was saved from.
TEST(CharReader, TrainsAndRoundTripsThroughItsFile) {
  const TaskPtr task = make_task("words");
  CharReader reader{CharReaderOptions()};
  Rng rng(2);
  reader->reset_parameters(rng);
  std::vector<double> losses;
  train_char_reader(*reader, *task, CharReaderTrainOptions().steps(200).batch(32).seed(3),
                    [&](int64_t, double loss) { losses.push_back(loss); });
  auto mean = [&](size_t begin) {
    double sum = 0;
    for (size_t i = begin; i < begin + 20; ++i) sum += losses[i];
    return sum / 20;
  };
  EXPECT_LT(mean(180), 0.95 * mean(0)) << mean(0) << " -> " << mean(180);
  const std::string path = testing::fresh_temp_dir("reader") + ".safetensors";
  save_char_reader(path, *reader, {{"note", "test"}});
  nlohmann::json meta;
  CharReader loaded = load_char_reader(path, &meta);
  EXPECT_EQ(meta["note"], "test");
  const auto x = task->test_split()->x.narrow(0, 0, 8);
  torch::NoGradGuard no_grad;
  reader->eval();
  EXPECT_TRUE(torch::equal(loaded->forward(x), reader->forward(x)));
  EXPECT_THROW(load_char_reader(testing::source("models/fashion_classifier.safetensors")),
               InputError);
}

// The shipped second judge (models/words_reader.safetensors, `ramflow train-classifier --task
// words`) reads the held-out test images: words it never saw in training.
TEST(CharReader, TheShippedReaderReadsHeldOutWords) {
  const TaskPtr task = make_task("words");
  CharReader reader = load_char_reader(resolve_model_file("words_reader.safetensors"));
  const auto test = task->test_split();
  std::vector<std::string> words;
  for (int64_t i = 0; i < 500; ++i) words.push_back(test->cond.text(i));
  EXPECT_GT(exact_match_rate(*reader, test->x.narrow(0, 0, 500), words), 0.9);
}

// The evaluation's second judge: the reader grades what it reads. On the held-out test images it
// finds almost every word, their features match the test split's (Fréchet distance near 0), and
// words of one condition differ (fonts, positions); blank images and wrong conditions fail.
TEST(Grader, TheReaderJudgesWordsByExactMatch) {
  const TaskPtr task = make_task("words");
  const auto test = *task->test_split();
  const GraderPtr reader = load_grader(resolve_model_file("words_reader.safetensors"));
  EXPECT_EQ(reader->rate_name(), "exact_match");
  EXPECT_EQ(reader->num_classes(), 0);
  const ImageJudge judge(reader, test);
  const auto x = test.x.narrow(0, 0, 1000);
  const auto cond = test.cond.slice(0, 1000);
  const ImageMetrics m = judge.measure(x, cond);
  EXPECT_EQ(m.rate_name, "exact_match");
  EXPECT_GT(m.accuracy, 0.9);
  EXPECT_TRUE(m.frechet_per_class.empty());
  EXPECT_GT(m.diversity, 0.0);  // the test split asks for each held-out word 4 times
  const ImageMetrics blank = judge.measure(-torch::ones_like(x), cond);
  EXPECT_EQ(blank.accuracy, 0.0);
  EXPECT_NEAR(blank.diversity, 0.0, 1e-6);
  EXPECT_GT(blank.frechet_distance, 10 * m.frechet_distance);
  // Each image asked for another word (the split asks for each word 4 times in a row): almost
  // none match.
  const auto shifted = task->conditions(torch::roll(cond.id(), 4));
  EXPECT_LT(judge.measure(x, shifted).accuracy, 0.05);
  // The judge's grades of the whole test split: its rate, a Fréchet distance to itself of 0 up to
  // the square roots of rounding-level eigenvalues, and the diversity of the data, close to that of
  // its first half.
  const ImageMetrics& data = judge.data();
  EXPECT_GT(data.accuracy, 0.9);
  EXPECT_LT(data.frechet_distance, 0.01 * m.frechet_distance);
  EXPECT_NEAR(data.diversity, m.diversity, 0.1 * m.diversity);
  // A classifier file is a judge too; a file that is neither is refused by name.
  const GraderPtr classifier = load_grader(resolve_model_file("fashion_classifier.safetensors"));
  EXPECT_EQ(classifier->rate_name(), "accuracy");
  EXPECT_EQ(classifier->num_classes(), 10);
  try {
    load_grader(resolve_model_file("fashion_base.safetensors"));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not an evaluation judge"), std::string::npos);
  }
}

// A judge that reads other images than the task makes is refused by name before any sampling:
// the text reader (16 x 64) as the fashion task's judge (28 x 28).
TEST(Grader, AJudgeOfOtherImagesIsRefusedByName) {
  const TaskPtr fashion = make_task("fashion");
  auto base = make_velocity_field(fashion->default_model(), 0);
  EXPECT_EQ(load_grader(resolve_model_file("words_reader.safetensors"))->image_shape(),
            (std::vector<int64_t>{1, 16, 64}));
  try {
    Evaluator(fashion,
              make_reward(
                  {{"type", "classifier"}, {"checkpoint", "fashion_classifier.safetensors"}}, 784),
              1.0, *base, EvalOptions().samples(4).target(false).judge("words_reader.safetensors"));
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("words_reader.safetensors' reads [1, 16, 64] images"), std::string::npos)
        << what;
    EXPECT_NE(what.find("[1, 28, 28]"), std::string::npos) << what;
  }
}

// `ramflow sample --checkpoint CKPT --prompts FILE --out DIR` on a words run: each prompt
// --per-prompt times, images in [0, 1]; prompts the task cannot take are refused before anything
// is written.
TEST(WordsJobs, SamplePromptsWritesImagesOfEachPrompt) {
  std::ostringstream log;
  const nlohmann::json words = {{"height", 8},      {"width", 24},   {"min_letters", 3},
                                {"max_letters", 3}, {"min_size", 6}, {"max_size", 6},
                                {"eval_images", 8}};
  auto model = testing::tiny_sd3_char_spec(10);
  model["config"]["pos_embed_max_size"] = 12;
  const std::string run = testing::fresh_temp_dir("words_sample_run");
  const std::vector<std::pair<std::string, std::string>> pretrain_args = {
      {"task", "words"},       {"words", words.dump()},
      {"model", model.dump()}, {"pretrain_steps", "2"},
      {"pretrain_batch", "4"}, {"track_reward", ""},
      {"eval_steps", "2"},     {"out", run}};
  run_pretrain(Config::resolve(pretrain_params(), "", pretrain_args), JobIO{log, false});
  const std::string prompts = testing::fresh_temp_dir("words_prompts") + ".txt";
  {
    std::ofstream out(prompts);
    out << "cat\n\n{\"prompt\": \"ZEBRA\"}\n";
  }
  auto sample_args = [&](const std::string& out) {
    return std::vector<std::pair<std::string, std::string>>{
        {"checkpoint", run + "/checkpoints/base.safetensors"},
        {"prompts", prompts},
        {"per_prompt", "3"},
        {"steps", "2"},
        {"cfg", "2"},
        {"out", out}};
  };
  const std::string out = testing::fresh_temp_dir("words_sample_out");
  const auto summary =
      run_sample(Config::resolve(sample_params(), "", sample_args(out)), JobIO{log, false});
  EXPECT_EQ(summary["samples"], 6);
  const auto file = load_safetensors(out + "/samples.safetensors");
  const auto& images = file.at("images", out);
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{6, 1, 8, 24}));
  EXPECT_GE(images.min().item<float>(), 0.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
  const auto meta = nlohmann::json::parse(file.metadata.at("ramflow"));
  EXPECT_EQ(meta["prompts"], nlohmann::json({"cat", "ZEBRA"}));
  EXPECT_TRUE(std::filesystem::exists(out + "/samples.png"));
  // A prompt of other characters, and --n beside --prompts: refused, nothing written.
  {
    std::ofstream bad(prompts);
    bad << "C4T\n";
  }
  const std::string refused = testing::fresh_temp_dir("words_sample_refused");
  EXPECT_THROW(
      run_sample(Config::resolve(sample_params(), "", sample_args(refused)), JobIO{log, false}),
      ConfigError);
  EXPECT_FALSE(std::filesystem::exists(refused));
  auto with_n = sample_args(refused);
  with_n.push_back({"n", "5"});
  EXPECT_THROW(run_sample(Config::resolve(sample_params(), "", with_n), JobIO{log, false}),
               ConfigError);
}

// `ramflow finetune --task words` runs from the task's preset: the shipped base, Tesseract's
// reward, the reader as the judge, and for RAM the released-code settings of the preset's "methods"
// entry, which another method does not receive. A tiny run: one step, eight evaluation samples.
TEST(WordsJobs, FinetuneTakesTheTasksSettingsForItsMethod) {
  std::ostringstream log;
  auto finetune = [&](const std::string& method) {
    const std::string out = testing::fresh_temp_dir("words_finetune_" + method);
    const std::vector<std::pair<std::string, std::string>> args = {
        {"task", "words"},     {"method", method},  {"out", out},        {"steps", "1"},
        {"groups", "1"},       {"group_size", "2"}, {"draws", "1"},      {"rollout_steps", "2"},
        {"eval_samples", "8"}, {"eval_steps", "2"}, {"eval_every", "0"}, {"eval_kl_samples", "2"},
        {"eval_kl_steps", "2"}};
    const auto summary =
        run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
    std::ifstream in(out + "/config.json");
    return std::make_pair(summary, nlohmann::json::parse(in));
  };
  const auto [ram, ram_cfg] = finetune("ram");
  EXPECT_EQ(ram_cfg["base"], "words_base.safetensors");
  EXPECT_EQ(ram_cfg["reward"], "ocr");
  EXPECT_EQ(ram_cfg["eval_classifier"], "words_reader.safetensors");
  EXPECT_EQ(ram_cfg["lr"], 1e-4);
  EXPECT_EQ(ram_cfg["ram_signal"], "normalized");
  EXPECT_EQ(ram_cfg["ram_target_copy"], "ema");
  EXPECT_EQ(ram_cfg["time_dist"], "power");
  for (const char* when : {"before", "after"}) {
    const auto& e = ram.at(when);
    EXPECT_GE(e.at("exact_match").get<double>(), 0.0) << when;  // the reader's rate
    EXPECT_LE(e.at("exact_match").get<double>(), 1.0) << when;
    EXPECT_TRUE(e.at("reward_terms").contains("exact_match")) << when;  // Tesseract's
    EXPECT_TRUE(e.contains("frechet_distance")) << when;
    EXPECT_FALSE(e.contains("frechet_distance_per_class")) << when;
  }
  // The reader on the task's test images: the reference of the rate and the diversity.
  EXPECT_GT(ram.at("test_data").at("exact_match").get<double>(), 0.9);
  EXPECT_GT(ram.at("test_data").at("diversity").get<double>(), 0.0);
  const auto [nft, nft_cfg] = finetune("nft");
  EXPECT_EQ(nft_cfg["lr"], 1e-4);  // the task's entry for NFT, over the method's own preset
  EXPECT_NE(nft_cfg["lr"], methods().get("nft").preset.at("lr"));
  EXPECT_EQ(nft_cfg["ram_signal"], "raw");  // the table's default: RAM's entry is RAM's
  EXPECT_EQ(nft_cfg["time_dist"], "uniform");
}

// `ramflow compare --task words` grades every evaluation of the curve by both judges: Tesseract's
// exact match (a term of the reward) and the reader's, with the Fréchet distance, in result.json,
// report.json, report.md and plots. A tiny run: two steps, eight evaluation samples.
TEST(WordsJobs, CompareCurvesCarryBothJudges) {
  std::ostringstream log;
  const std::string out = testing::fresh_temp_dir("words_compare");
  const std::vector<std::pair<std::string, std::string>> args = {{"task", "words"},
                                                                 {"methods", "ram,flow-grpo"},
                                                                 {"out", out},
                                                                 {"seeds", "1"},
                                                                 {"steps", "2"},
                                                                 {"groups", "1"},
                                                                 {"group_size", "2"},
                                                                 {"draws", "1"},
                                                                 {"rollout_steps", "2"},
                                                                 {"eval_samples", "8"},
                                                                 {"eval_steps", "2"},
                                                                 {"eval_every", "1"},
                                                                 {"eval_curve_samples", "8"},
                                                                 {"eval_kl_samples", "2"},
                                                                 {"eval_kl_steps", "2"}};
  run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
  const auto report = nlohmann::json::parse(read_file(out + "/report.json"));
  for (const char* method : {"ram", "flow-grpo"}) {
    const auto& m = report["methods"][method];
    for (const auto& stat : {m["exact_match_final"], m["reward_terms_final"]["exact_match"]}) {
      EXPECT_GE(stat["mean"].get<double>(), 0.0) << method;
      EXPECT_LE(stat["mean"].get<double>(), 1.0) << method;
    }
    EXPECT_GE(m["frechet_distance_final"]["mean"].get<double>(), 0.0) << method;
  }
  EXPECT_GT(report["test_data"]["exact_match"].get<double>(), 0.9);  // the reader on the data
  ASSERT_EQ(report["runs"].size(), 2u);
  for (const auto& run : report["runs"]) {
    EXPECT_EQ(run["rate_name"], "exact_match");
    ASSERT_EQ(run["step"].size(), 3u);  // the base, step 1, step 2
    for (const char* key : {"judge_rate", "frechet_distance"}) {
      ASSERT_EQ(run[key].size(), 3u) << key;
      for (const auto& v : run[key]) EXPECT_TRUE(v.is_number()) << key;
    }
    ASSERT_EQ(run["reward_terms"]["exact_match"].size(), 3u);
    // Index 0 is the base model on the same noise: every run starts from the same point.
    EXPECT_EQ(run["judge_rate"][0], report["runs"][0]["judge_rate"][0]);
  }
  // A resumed comparison reuses the finished runs: their curves read back are the curves written.
  run_compare(Config::resolve(compare_params(), "", {{"resume", out}}), JobIO{log, false});
  const auto again = nlohmann::json::parse(read_file(out + "/report.json"));
  EXPECT_EQ(again["runs"], report["runs"]);
  EXPECT_EQ(again["methods"]["ram"]["reward_terms_final"],
            report["methods"]["ram"]["reward_terms_final"]);
  const std::string md = read_file(out + "/report.md");
  EXPECT_NE(md.find("exact match"), std::string::npos);
  EXPECT_NE(md.find("reward: exact_match"), std::string::npos);
  for (const char* plot : {"judge_vs_steps", "frechet_vs_steps", "reward_vs_frechet"})
    EXPECT_TRUE(std::filesystem::exists(out + "/plots/" + plot + ".png")) << plot;
  // Each configuration's settings as it ran them: RAM's m 20 is the task's preset for RAM, which
  // Flow-GRPO, reading no m, does not show; not the compare's own m.
  EXPECT_EQ(report["methods"]["ram"]["options"]["multiplier"], 20.0);
  EXPECT_FALSE(report["methods"]["flow-grpo"]["options"].contains("multiplier"));
  EXPECT_EQ(report["methods"]["ram"]["steps"], 2);
  EXPECT_NE(md.find("- ram: 2 steps, lr 0.0001, m = 20\n"), std::string::npos) << md;
  EXPECT_EQ(md.find(", m = 5"), std::string::npos) << md;
}

}  // namespace
}  // namespace ramflow
