// `ramflow train-classifier`: trains an image classifier on an image task's training split and
// measures it on the test split; the file serves the `classifier` reward (arch cnn) or image
// evaluation (resnet). For the words task: a text recogniser (arch reader), its second judge.
#include <chrono>

#include <torch/torch.h>

#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "ramflow/char_reader.h"
#include "ramflow/classifier.h"
#include "ramflow/errors.h"
#include "ramflow/jobs.h"
#include "ramflow/progress.h"
#include "ramflow/run_dir.h"

namespace ramflow {

ParamTable train_classifier_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  t.group("Data");
  std::vector<std::string> image_tasks;
  for (const auto& name : tasks().names())
    if (tasks().get(name).images) image_tasks.push_back(name);
  t.text("task", "fashion", "an image task (its training split trains, its test split measures)",
         image_tasks);
  t.text("data_dir", nullptr, "the directory of the dataset's IDX files (default: the task's)");
  jobs::add_words_param(t);
  t.group("Classifier");
  t.text("arch", "cnn",
         "architecture: cnn (the classifier reward's judge) or resnet (the evaluation classifier); "
         "reader (a CTC text recogniser, char_reader.h) for task words, its default there",
         {"cnn", "resnet", "reader"});
  t.integer("steps", nullptr, "--arch reader: Adam steps, each on fresh images (default 3000)", 1,
            10000000);
  t.integer("epochs", 5, "passes over the training split", 1, 10000);
  t.integer("batch", 128, "batch size", 1, 1 << 20);
  t.number("lr", 1e-3, "Adam learning rate", 0, 10, true);
  t.integer("train_limit", 0, "use only the first N training images (0 = all; for quick checks)", 0,
            1 << 30);
  return t;
}

namespace {

// --arch reader: a text recogniser trained with CTC on fresh images of the task's training words,
// measured by its exact-match rate on the test split (held-out words).
nlohmann::json train_reader(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  for (const char* key : {"epochs", "train_limit"})
    if (cfg.is_explicit(key))
      throw ConfigError(cfg.table().find(key)->flag() +
                        " applies to the classifiers; --arch reader trains for --steps");
  const auto shape = task.sample_shape();
  const auto options = CharReaderOptions::from_json(  // validated before any compute
      CharReaderOptions().height(shape[1]).width(shape[2]).to_json());
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values());
  const uint64_t seed = static_cast<uint64_t>(cfg.integer("seed"));
  CharReader reader(options);
  Rng init(seed);
  reader->reset_parameters(init);
  reader->to(device);
  const int64_t steps = cfg.is_set("steps") ? cfg.integer("steps") : 3000;
  Progress bar("train-classifier", steps, io.log, io.tty);
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const double rate = train_char_reader(
      *reader, task,
      CharReaderTrainOptions()
          .steps(steps)
          .batch(cfg.integer("batch"))
          .lr(cfg.number("lr"))
          .seed(seed + 1),
      [&](int64_t step, double loss) {
        bar.update(step, "CTC loss " + jobs::fixed(loss, 4));
        if (step % 50 == 0 || step == steps)
          run.append_metrics({{"step", step}, {"loss", loss}, {"seconds", seconds()}});
      });
  bar.finish("held-out exact match " + jobs::fixed(rate, 4));
  nlohmann::json facts = {{"task", task.name()},      {"arch", "reader"},
                          {"steps", steps},           {"seed", cfg.integer("seed")},
                          {"test_exact_match", rate}, {"seconds", seconds()}};
  save_char_reader(run.checkpoint("reader"), *reader, facts);
  nlohmann::json summary = facts;
  int64_t n_params = 0;
  for (const auto& p : reader->parameters()) n_params += p.numel();
  summary["parameters"] = n_params;
  summary["checkpoint"] = "checkpoints/reader.safetensors";
  run.write_summary(summary);
  io.results() << "exact match " << jobs::fixed(rate, 4) << " on the test split's held-out words ("
               << jobs::fixed(seconds(), 0) << " s)\nrun directory: " << run.path() << "\n";
  return summary;
}

}  // namespace

nlohmann::json run_train_classifier(const Config& cfg, JobIO io) {
  if (!cfg.is_set("out"))
    throw ConfigError(
        "--out: the run directory is required (a flag: a config file's out is not used)");
  const torch::Device device = jobs::setup_device(cfg);
  TaskPtr task = jobs::task_from(cfg);
  const bool words = task->name() == "words";
  if (words && cfg.is_explicit("arch") && cfg.text("arch") != "reader")
    throw ConfigError("--arch " + cfg.text("arch") +
                      ": task 'words' has no classes; its judge is --arch reader");
  if (!words && cfg.text("arch") == "reader")
    throw ConfigError("--arch reader reads images of words: it needs --task words");
  if (words) return train_reader(cfg, *task, device, io);
  if (cfg.is_set("steps"))
    throw ConfigError("--steps applies to --arch reader; the classifiers train for --epochs");
  if (task->num_classes() < 2 || task->sample_shape().size() != 3 || !task->test_split())
    throw ConfigError("task '" + task->name() +
                      "' is not a labelled image task (try --task fashion)");
  const auto shape = task->sample_shape();
  if (shape[1] != shape[2]) throw ConfigError("task '" + task->name() + "': images must be square");
  ClassifierOptions options;
  options.arch(cfg.text("arch"))
      .in_channels(shape[0])
      .image_size(shape[1])
      .num_classes(task->num_classes());
  ImageClassifier model(
      ClassifierOptions::from_json(options.to_json()));  // validated before any compute
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values());

  // The whole training split, in file order (a permutation per epoch follows in train_classifier).
  torch::Tensor x, labels;
  {
    const auto train = task->training_split();
    x = train.x;
    labels = train.cond.at("label");
  }
  if (cfg.integer("train_limit") > 0 && cfg.integer("train_limit") < x.size(0)) {
    x = x.narrow(0, 0, cfg.integer("train_limit"));
    labels = labels.narrow(0, 0, cfg.integer("train_limit"));
  }
  const auto test = *task->test_split();
  const uint64_t seed = static_cast<uint64_t>(cfg.integer("seed"));
  Rng init(seed);
  model->reset_parameters(init);
  model->to(device);
  const int64_t epochs = cfg.integer("epochs");
  const int64_t batches = (x.size(0) + cfg.integer("batch") - 1) / cfg.integer("batch");
  Progress bar("train-classifier", epochs * batches, io.log, io.tty);
  double seconds = 0;
  const double accuracy = train_classifier(
      *model, x, labels, test.x, test.cond.at("label"),
      ClassifierTrainOptions()
          .epochs(epochs)
          .batch(cfg.integer("batch"))
          .lr(cfg.number("lr"))
          .seed(seed + 1),
      [&](const ClassifierEpoch& e) {
        seconds = e.seconds;
        if (std::isnan(e.test_accuracy)) {
          bar.update((e.epoch - 1) * batches + e.batches,
                     "epoch " + std::to_string(e.epoch) + " loss " + jobs::fixed(e.loss, 4));
          return;
        }
        run.append_metrics({{"epoch", e.epoch},
                            {"loss", e.loss},
                            {"test_accuracy", e.test_accuracy},
                            {"seconds", e.seconds}});
      });
  bar.finish("test accuracy " + jobs::fixed(accuracy, 4));
  // Per-class accuracy on the test split.
  nlohmann::json per_class = nlohmann::json::object();
  for (int64_t k = 0; k < task->num_classes(); ++k) {
    const auto& test_labels = test.cond.at("label");
    auto idx = (test_labels == k).nonzero().flatten();
    per_class[task->condition_text(k)] =
        classifier_accuracy(*model, test.x.index_select(0, idx), test_labels.index_select(0, idx));
  }
  nlohmann::json facts = {{"task", task->name()},      {"arch", cfg.text("arch")},
                          {"epochs", epochs},          {"seed", cfg.integer("seed")},
                          {"test_accuracy", accuracy}, {"train_images", x.size(0)},
                          {"seconds", seconds}};
  save_classifier(run.checkpoint("classifier"), *model, facts);
  nlohmann::json summary = facts;
  summary["test_accuracy_per_class"] = per_class;
  int64_t n_params = 0;
  for (const auto& p : model->parameters()) n_params += p.numel();
  summary["parameters"] = n_params;
  summary["checkpoint"] = "checkpoints/classifier.safetensors";
  run.write_summary(summary);
  io.results() << "test accuracy " << jobs::fixed(accuracy, 4) << " on " << test.x.size(0)
               << " test images (" << jobs::fixed(seconds, 0)
               << " s)\nrun directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
