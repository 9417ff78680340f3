// The image path end to end on a tiny dataset: pretrain (EMA, label dropout, checkpoints, grids),
// train-classifier, and finetune with the classifier reward graded by an evaluation classifier.
#include <algorithm>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/image.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/npy.h"
#include "ramflow/pretrain.h"
#include "ramflow/unet.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

std::string temp_dir(const std::string& name) {
  return testing::fresh_temp_dir("image_jobs_" + name);
}

const std::string kTinyUNet =
    R"({"type": "unet", "image_size": 8, "channels": 16, "mult": [1, 2], "num_classes": 10})";

// Label dropout 1 trains only the null row of the class embedding; dropout 0 never touches it. The
// model ends holding the EMA weights, which the last record's `weights` showed.
TEST(Pretrain, LabelDropoutAndEma) {
  auto task = make_task("fashion", {{"data_dir", testing::tiny_image_dataset(temp_dir("data"))}});
  for (double dropout : {0.0, 1.0}) {
    auto model = make_velocity_field(nlohmann::json::parse(kTinyUNet), 0);
    const auto init = model->named_parameters()["class_emb.weight"].clone();  // [11, E]
    torch::Tensor last_weights;
    pretrain_flow_matching(
        *model, [&](int64_t n, Rng& rng, Condition* c) { return task->sample_data(n, rng, {}, c); },
        PretrainOptions()
            .steps(5)
            .batch(16)
            .lr(1e-2)
            .ema(0.5)
            .label_dropout(dropout)
            .null_condition(task->null_condition()),
        [&](const PretrainRecord& r) {
          last_weights = r.weights->named_parameters()["conv_in.weight"].clone();
        });
    const auto emb = model->named_parameters()["class_emb.weight"];
    const bool null_row_same = torch::equal(emb[10], init[10]);
    const bool class_rows_same = torch::equal(emb.narrow(0, 0, 10), init.narrow(0, 0, 10));
    EXPECT_EQ(null_row_same, dropout == 0.0) << "dropout " << dropout;
    EXPECT_EQ(class_rows_same, dropout == 1.0) << "dropout " << dropout;
    EXPECT_TRUE(torch::equal(model->named_parameters()["conv_in.weight"], last_weights));
  }
  EXPECT_THROW(
      pretrain_flow_matching(
          *make_velocity_field(nlohmann::json::parse(kTinyUNet)),
          [&](int64_t n, Rng& rng, Condition* c) { return task->sample_data(n, rng, {}, c); },
          PretrainOptions().steps(1).label_dropout(1.5)),
      ConfigError);
}

TEST(ImageJobs, PretrainTrainClassifierAndFinetune) {
  const auto data = testing::tiny_image_dataset(temp_dir("data2"), 120, 60);
  std::ostringstream log;
  // pretrain: checkpoint, loss curve, per-class grids
  const auto pre = temp_dir("pretrain");
  auto pcfg = Config::resolve(pretrain_params(), "",
                              {{"out", pre},
                               {"task", "fashion"},
                               {"data_dir", data},
                               {"model", kTinyUNet},
                               {"pretrain_steps", "20"},
                               {"pretrain_batch", "16"},
                               {"checkpoint_every", "10"},
                               {"eval_steps", "4"}});
  auto psummary = run_pretrain(pcfg, JobIO{log, false});
  EXPECT_TRUE(fs::exists(pre + "/checkpoints/base.safetensors"));
  auto grid = read_png(pre + "/plots/samples.png");
  // Grey, 10 rows of 8 images: data | model, under a heading band (40) within margins of 8; the
  // 8-pixel images enlarged 7 times (legible_scale), 3 pixels apart.
  EXPECT_EQ(grid.dim(), 2);
  EXPECT_EQ(grid.size(0), 8 + 40 + 10 * (7 * 8 + 3) + 3 + 8);
  EXPECT_EQ(read_checkpoint_meta(pre + "/checkpoints/base.safetensors")["step"], 20);

  // train-classifier: a judge for the reward and another for the evaluation
  std::string judges[2];
  for (int i = 0; i < 2; ++i) {
    const auto out = temp_dir(std::string("clf") + std::to_string(i));
    auto ccfg = Config::resolve(train_classifier_params(), "",
                                {{"out", out},
                                 {"data_dir", data},
                                 {"arch", i == 0 ? "cnn" : "resnet"},
                                 {"epochs", "4"},
                                 {"batch", "16"},
                                 {"lr", "3e-3"},
                                 {"seed", std::to_string(i)}});
    auto csummary = run_train_classifier(ccfg, JobIO{log, false});
    EXPECT_GE(csummary["test_accuracy"].get<double>(), 0.9) << (i == 0 ? "cnn" : "resnet");
    judges[i] = out + "/checkpoints/classifier.safetensors";
  }

  // finetune: the fashion preset with tiny sizes; summary carries the image metrics before and
  // after The flags every post-training job below shares: the tiny data, base, judges and sizes.
  auto tiny = [&](const std::string& out, std::vector<std::pair<std::string, std::string>> extra) {
    std::vector<std::pair<std::string, std::string>> flags = {
        {"out", out},
        {"task", "fashion"},
        {"data_dir", data},
        {"base", pre + "/checkpoints/base.safetensors"},
        {"reward", R"({"type": "classifier", "checkpoint": ")" + judges[0] + R"("})"},
        {"eval_classifier", judges[1]},
        {"groups", "2"},
        {"group_size", "4"},
        {"rollout_steps", "3"},
        {"eval_samples", "30"},
        {"eval_pool", "60"},
        {"eval_steps", "3"},
        {"eval_kl_samples", "4"},
        {"eval_kl_steps", "2"}};
    for (auto& kv : extra) {
      auto it = std::find_if(flags.begin(), flags.end(),
                             [&](const auto& f) { return f.first == kv.first; });
      if (it != flags.end())
        it->second = kv.second;
      else
        flags.push_back(kv);
    }
    return flags;
  };
  const auto ft = temp_dir("finetune");
  auto fcfg = Config::resolve(
      finetune_params(), "",
      tiny(ft, {{"steps", "3"}, {"eval_every", "0"}, {"cfg", "1.5"}, {"eval_cfg", "1.5"}}));
  auto summary = run_finetune(fcfg, JobIO{log, false});
  // The run says which base model it loaded.
  EXPECT_NE(log.str().find("base model: " + pre + "/checkpoints/base.safetensors (model 'base', "),
            std::string::npos)
      << log.str();
  for (const char* when : {"before", "after"})
    for (const char* key : {"accuracy", "frechet_distance", "diversity", "mean_intensity",
                            "saturated_fraction", "edge_density", "frechet_distance_per_class"})
      EXPECT_TRUE(summary[when].contains(key)) << when << "." << key;
  EXPECT_GE(summary["before"]["accuracy"].get<double>(), 0.0);
  EXPECT_LE(summary["before"]["accuracy"].get<double>(), 1.0);
  EXPECT_TRUE(fs::exists(ft + "/plots/samples.png"));
  EXPECT_EQ(read_checkpoint_meta(ft + "/checkpoints/final.safetensors")["models"]["policy"]["type"],
            "unet");

  // sample: the raw batch as .npy with its labels beside it, and a grid; one class on request
  const auto npy = temp_dir("sample") + ".npy";
  const auto grid_png = temp_dir("grid") + ".png";
  auto scfg = Config::resolve(sample_params(), "",
                              {{"checkpoint", ft + "/checkpoints/final.safetensors"},
                               {"model", "ref"},
                               {"n", "20"},
                               {"steps", "3"},
                               {"out", npy},
                               {"plot", grid_png},
                               {"cfg", "2"}});
  run_sample(scfg, JobIO{log, false});
  auto x = read_npy(npy);
  auto labels = read_npy(npy.substr(0, npy.size() - 4) + ".labels.npy");
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{20, 1, 8, 8}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(labels, torch::arange(20).remainder(10)));
  EXPECT_EQ(read_png(grid_png).size(0), 8 + 40 + 10 * (7 * 8 + 3) + 3 + 8);  // a row per class
  auto one = Config::resolve(sample_params(), "",
                             {{"checkpoint", ft + "/checkpoints/final.safetensors"},
                              {"n", "4"},
                              {"steps", "2"},
                              {"out", npy},
                              {"labels", "2"}});
  run_sample(one, JobIO{log, false});
  EXPECT_TRUE(torch::equal(read_npy(npy.substr(0, npy.size() - 4) + ".labels.npy"),
                           torch::full({4}, 2, torch::kLong)));
  // LoRA: adapters alone train; the checkpoint holds the policy (its base is the reference), the
  // adapters in PEFT's layout and the merged weights; `sample --model ref` is the base, bit for
  // bit.
  const auto lo = temp_dir("finetune_lora");
  auto lsummary = run_finetune(
      Config::resolve(
          finetune_params(), "",
          tiny(lo, {{"steps", "3"}, {"eval_every", "0"}, {"lora_rank", "2"}, {"lr", "1e-2"}})),
      JobIO{log, false});
  EXPECT_GT(lsummary["lora"]["layers"].get<int64_t>(), 0);
  const auto lmeta = read_checkpoint_meta(lo + "/checkpoints/final.safetensors");
  EXPECT_EQ(lmeta["models"]["policy"]["type"], "lora");
  EXPECT_FALSE(lmeta["models"].contains("ref"));
  EXPECT_TRUE(fs::exists(lo + "/lora/adapter_config.json"));
  EXPECT_TRUE(fs::exists(lo + "/lora/adapter_model.safetensors"));
  EXPECT_EQ(
      read_checkpoint_meta(lo + "/checkpoints/merged.safetensors")["models"]["policy"]["type"],
      "unet");
  {
    const auto trained = load_safetensors(lo + "/checkpoints/final.safetensors");
    const auto pretrained = load_safetensors(pre + "/checkpoints/base.safetensors");
    int64_t compared = 0;
    for (const auto& [name, tensor] : pretrained.tensors) {
      EXPECT_TRUE(torch::equal(trained.at("policy.base." + name.substr(5)), tensor))
          << name;  // "base." -> "policy.base."
      ++compared;
    }
    EXPECT_GT(compared, 0);
  }
  auto sample_of = [&](const std::string& checkpoint, const std::string& model) {
    const auto out = temp_dir("lora_sample_" + model) + ".npy";
    std::vector<std::pair<std::string, std::string>> f = {
        {"checkpoint", checkpoint}, {"n", "12"}, {"steps", "3"}, {"out", out}};
    if (!model.empty()) f.emplace_back("model", model);
    run_sample(Config::resolve(sample_params(), "", f), JobIO{log, false});
    return read_npy(out);
  };
  const auto from_ref = sample_of(lo + "/checkpoints/final.safetensors", "ref");
  EXPECT_TRUE(torch::equal(from_ref, sample_of(pre + "/checkpoints/base.safetensors", "")));
  const auto from_policy = sample_of(lo + "/checkpoints/final.safetensors", "policy");
  EXPECT_FALSE(torch::equal(from_policy, from_ref));  // the adapters trained
  EXPECT_TRUE(torch::allclose(sample_of(lo + "/checkpoints/merged.safetensors", ""), from_policy,
                              1e-4, 1e-5));

  // A LoRA run resumed: 2 steps, resume, 2 more equal 4 straight, adapters, EMAs and optimiser bit
  // for bit.
  {
    const auto split = temp_dir("lora_split"), straight = temp_dir("lora_straight");
    auto lora_run = [&](const std::string& out, const std::string& steps) {
      return Config::resolve(finetune_params(), "",
                             tiny(out, {{"steps", steps},
                                        {"eval_every", "0"},
                                        {"lora_rank", "2"},
                                        {"lr", "1e-2"},
                                        {"eval_ema", "0.5"},
                                        {"method", "ram-anneal"},
                                        {"anneal_stages", "2"},
                                        {"anneal_stage_steps", "1"}}));
    };
    run_finetune(lora_run(split, "2"), JobIO{log, false});
    run_finetune(Config::resolve(finetune_params(), "", {{"resume", split}, {"steps", "4"}}),
                 JobIO{log, false});
    run_finetune(lora_run(straight, "4"), JobIO{log, false});
    testing::expect_same_checkpoint(split + "/checkpoints/step-00000004.safetensors",
                                    straight + "/checkpoints/step-00000004.safetensors");
    EXPECT_FALSE(
        read_checkpoint_meta(split + "/checkpoints/step-00000004.safetensors")["models"].contains(
            "ref"));
    // The frozen base, shared by the policy, the evaluation EMA and the stage's frozen model, is
    // written once (as policy.base.*); every other name of it is an alias, and every alias names a
    // written tensor.
    const auto file = load_safetensors(split + "/checkpoints/step-00000004.safetensors");
    const auto meta = read_checkpoint_meta(split + "/checkpoints/step-00000004.safetensors");
    ASSERT_TRUE(meta.contains("aliases"));
    int64_t base_written = 0;
    for (const auto& [name, tensor] : file.tensors)
      if (name.find(".base.") != std::string::npos) {
        EXPECT_EQ(name.rfind("policy.base.", 0), 0u) << name << " is a second copy of the base";
        ++base_written;
      }
    EXPECT_EQ(base_written,
              static_cast<int64_t>(
                  load_safetensors(pre + "/checkpoints/base.safetensors").tensors.size()));
    EXPECT_GT(meta["aliases"].size(), 0u);
    for (const auto& [alias, target] : meta["aliases"].items()) {
      const std::string written = target.get<std::string>(),
                        path = written.substr(written.find('.'));
      EXPECT_TRUE(alias.size() > path.size() &&
                  alias.compare(alias.size() - path.size(), path.size(), path) == 0)
          << alias << " -> " << written;  // the same parameter of another model
      EXPECT_NO_THROW(file.at(written)) << alias;
    }
  }

  // compare on images: every method's final accuracy and Fréchet distance in report.json
  const auto cmp = temp_dir("compare");
  run_compare(Config::resolve(compare_params(), "",
                              tiny(cmp, {{"methods", "ram,draft"},
                                         {"seeds", "1"},
                                         {"steps", "2"},
                                         {"eval_every", "1"},
                                         {"eval_curve_samples", "20"},
                                         {"lora_rank", "2"}})),
              JobIO{log, false});
  auto report = nlohmann::json::parse(read_file(cmp + "/report.json"));
  for (const char* method : {"ram", "draft"}) {
    const double acc = report["methods"][method]["accuracy_final"]["mean"].get<double>();
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    EXPECT_GE(report["methods"][method]["frechet_distance_final"]["mean"].get<double>(), 0.0);
  }
  // With a non-differentiable reward the default method list drops the methods that differentiate
  // it; an explicit one refuses them before any compute.
  const auto jpeg = temp_dir("compare_jpeg");
  auto jflags = tiny(jpeg, {{"reward", "jpeg-compressibility"},
                            {"seeds", "1"},
                            {"steps", "1"},
                            {"eval_every", "1"},
                            {"eval_curve_samples", "20"}});
  run_compare(Config::resolve(compare_params(), "", jflags), JobIO{log, false});
  auto jreport = nlohmann::json::parse(read_file(jpeg + "/report.json"));
  EXPECT_TRUE(jreport["methods"].contains("ram"));
  EXPECT_TRUE(jreport["methods"].contains("nft"));
  EXPECT_FALSE(jreport["methods"].contains("draft"));
  EXPECT_FALSE(jreport["methods"].contains("adjoint-matching"));
  const auto refused = temp_dir("compare_jpeg_draft");
  jflags[0].second = refused;
  jflags.emplace_back("methods", "ram,draft");
  EXPECT_THROW(run_compare(Config::resolve(compare_params(), "", jflags), JobIO{log, false}),
               ConfigError);
  EXPECT_FALSE(fs::exists(refused));

  auto bad = Config::resolve(
      sample_params(), "",
      {{"checkpoint", ft + "/checkpoints/final.safetensors"}, {"out", npy}, {"labels", "12"}});
  EXPECT_THROW(run_sample(bad, JobIO{log, false}), ConfigError);
}

TEST(Npy, RoundTripsEveryType) {
  const auto path = temp_dir("a") + ".npy";
  for (auto type : {torch::kFloat, torch::kDouble, torch::kLong, torch::kInt, torch::kByte}) {
    auto a = (torch::rand({3, 1, 4, 5}) * 100).to(type);
    write_npy(path, a);
    EXPECT_TRUE(torch::equal(read_npy(path), a)) << type;
    // NumPy's layout: magic, version 1.0, and the data 64-byte aligned.
    const auto bytes = read_file(path);
    EXPECT_EQ(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)), 0);
    EXPECT_EQ((bytes.size() - static_cast<size_t>(a.nbytes())) % 64, 0u);
  }
  auto v = torch::arange(7);
  write_npy(path, v);
  EXPECT_NE(read_file(path).find("'shape': (7, )"), std::string::npos);
  EXPECT_TRUE(torch::equal(read_npy(path), v));
}

TEST(ImageJobs, GuidanceNeedsAConditionalTask) {
  std::ostringstream log;
  const auto out = temp_dir("cfg_ring");
  auto cfg = Config::resolve(finetune_params(), "", {{"out", out}, {"cfg", "2"}});
  EXPECT_THROW(run_finetune(cfg, JobIO{log, false}), ConfigError);
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace ramflow
