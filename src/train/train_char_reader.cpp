// Training the words task's text recogniser with CTC (see include/ramflow/char_reader.h).
#include <cctype>

#include <torch/torch.h>

#include "ramflow/adamw.h"
#include "ramflow/char_reader.h"
#include "ramflow/errors.h"

namespace ramflow {

torch::Tensor exact_matches(CharReaderImpl& reader, const torch::Tensor& x,
                            const std::vector<std::string>& words) {
  TORCH_CHECK(x.size(0) == static_cast<int64_t>(words.size()), "exact_matches: ", x.size(0),
              " images for ", words.size(), " words");
  const bool training = reader.is_training();
  reader.eval();
  auto out = torch::zeros({x.size(0)}, torch::kBool);
  constexpr int64_t kChunk = 256;
  for (int64_t begin = 0; begin < x.size(0); begin += kChunk) {
    const auto read = reader.read(x.narrow(0, begin, std::min(kChunk, x.size(0) - begin)));
    for (size_t i = 0; i < read.size(); ++i) {
      std::string want = words[static_cast<size_t>(begin) + i];
      for (char& c : want) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out[begin + static_cast<int64_t>(i)] = !want.empty() && read[i] == want;
    }
  }
  reader.train(training);
  return out;
}

double exact_match_rate(CharReaderImpl& reader, const torch::Tensor& x,
                        const std::vector<std::string>& words) {
  if (words.empty()) return 0.0;
  return exact_matches(reader, x, words).to(torch::kDouble).mean().item<double>();
}

double train_char_reader(CharReaderImpl& reader, const Task& task,
                         const CharReaderTrainOptions& options,
                         const std::function<void(int64_t, double)>& on_step) {
  if (options.steps() < 1 || options.batch() < 1 || !(options.lr() > 0))
    throw ConfigError("train_char_reader: steps, batch and lr must be positive");
  const auto test = task.test_split();
  if (!test || task.sample_shape().size() != 3)
    throw ConfigError("task '" + task.name() +
                      "' has no images of words to read (the reader trains on task 'words')");
  auto params = reader.parameters();
  const auto device = params.front().device();
  AdamW optimizer(params, AdamWOptions().lr(options.lr()));  // weight decay 0: Adam
  reader.train();
  for (int64_t step = 1; step <= options.steps(); ++step) {
    Rng rng = Rng(options.seed()).fork(static_cast<uint64_t>(step));
    Condition cond;
    const auto x = task.sample_data(options.batch(), rng, {}, &cond).to(device);
    if (!cond.has("tokens"))
      throw ConfigError("task '" + task.name() + "': its conditions carry no letters (\"tokens\")");
    auto loss = reader.loss(x, cond.at("tokens").to(device));
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (on_step) on_step(step, loss.item<double>());
  }
  reader.eval();
  std::vector<std::string> words;
  for (int64_t i = 0; i < test->cond.size(); ++i) words.push_back(test->cond.text(i));
  return exact_match_rate(reader, test->x.to(device), words);
}

}  // namespace ramflow
