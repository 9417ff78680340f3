// The task `prompts`: prompts and their embeddings from files (see include/ramflow/prompt_task.h).
#include "ramflow/prompt_task.h"

#include <sstream>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/prompts_file.h"
#include "ramflow/safetensors.h"

namespace ramflow {
namespace {

/// A float tensor of rank `rank` from the embeddings file (converted to float32).
torch::Tensor embeds(const SafetensorsFile& f, const std::string& path, const std::string& name,
                     int64_t rank) {
  const auto* t = find_tensor(f.tensors, name);
  if (!t) throw InputError(path + ": no tensor '" + name + "'");
  if (t->dim() != rank || !t->is_floating_point())
    throw InputError(path + ": '" + name + "' must be a float tensor of rank " +
                     std::to_string(rank) + ", found " + c10::str(t->sizes()));
  return t->to(torch::kFloat32);
}

class PromptTask : public Task {
 public:
  explicit PromptTask(const nlohmann::json& params) : params_(params) {
    SpecReader r(params, "task 'prompts'");
    const auto embeds_path = r.text("prompt_embeds");
    const auto prompts_path = r.text("prompts", "");
    const auto eval_path = r.text("eval_prompts", "");
    const auto shape = r.numbers("latent_shape");
    const int64_t context_dim = r.integer("context_dim", 0, 0);
    const int64_t pooled_dim = r.integer("pooled_dim", 0, 0);
    r.finish();
    for (double s : shape) latent_shape_.push_back(static_cast<int64_t>(s));
    const auto file = load_safetensors(embeds_path);
    const auto context = embeds(file, embeds_path, "prompt_embeds", 3);
    const auto pooled = embeds(file, embeds_path, "pooled_prompt_embeds", 2);
    const auto neg = embeds(file, embeds_path, "negative_prompt_embeds", 3);
    const auto neg_pooled = embeds(file, embeds_path, "negative_pooled_prompt_embeds", 2);
    const int64_t N = context.size(0), L = context.size(1), D = context.size(2), P = pooled.size(1);
    auto expect = [&](bool ok, const std::string& what) {
      if (!ok) throw InputError(embeds_path + ": " + what);
    };
    expect(pooled.size(0) == N, "pooled_prompt_embeds has " + std::to_string(pooled.size(0)) +
                                    " rows, prompt_embeds " + std::to_string(N));
    expect(neg.size(0) == 1 && neg.size(1) == L && neg.size(2) == D,
           "negative_prompt_embeds must be [1, " + std::to_string(L) + ", " + std::to_string(D) +
               "], found " + c10::str(neg.sizes()));
    expect(neg_pooled.size(0) == 1 && neg_pooled.size(1) == P,
           "negative_pooled_prompt_embeds must be [1, " + std::to_string(P) + "], found " +
               c10::str(neg_pooled.sizes()));
    if (context_dim > 0)
      expect(D == context_dim, "the embeddings' width is " + std::to_string(D) +
                                   ", the model's joint_attention_dim " +
                                   std::to_string(context_dim));
    if (pooled_dim > 0)
      expect(P == pooled_dim, "the pooled embeddings' width is " + std::to_string(P) +
                                  ", the model's pooled_projection_dim " +
                                  std::to_string(pooled_dim));
    if (prompts_path.empty()) {
      for (int64_t i = 0; i < N; ++i) prompts_.push_back({"prompt " + std::to_string(i), nullptr});
    } else {
      prompts_ = read_prompts(prompts_path);
      if (static_cast<int64_t>(prompts_.size()) != N)
        throw InputError(embeds_path + ": holds " + std::to_string(N) + " prompts' embeddings, " +
                         prompts_path + " " + std::to_string(prompts_.size()) + " prompts");
    }
    train_count_ = N;
    std::vector<torch::Tensor> contexts = {context}, pooleds = {pooled};
    if (!eval_path.empty()) {
      auto eval = read_prompts(eval_path);
      const auto ec = embeds(file, embeds_path, "eval_prompt_embeds", 3);
      const auto ep = embeds(file, embeds_path, "eval_pooled_prompt_embeds", 2);
      expect(ec.size(0) == static_cast<int64_t>(eval.size()) && ep.size(0) == ec.size(0),
             "holds " + std::to_string(ec.size(0)) + " evaluation prompts' embeddings, " +
                 eval_path + " " + std::to_string(eval.size()) + " prompts");
      expect(ec.size(1) == L && ec.size(2) == D && ep.size(1) == P,
             "eval_prompt_embeds / eval_pooled_prompt_embeds differ in width or length from "
             "prompt_embeds");
      prompts_.insert(prompts_.end(), eval.begin(), eval.end());
      contexts.push_back(ec);
      pooleds.push_back(ep);
    }
    // Rows 0..N+M-1: the prompts; the last row: the empty prompt (the null condition).
    contexts.push_back(neg);
    pooleds.push_back(neg_pooled);
    embeddings_.context = torch::cat(contexts, 0);  // [N + M + 1, L, D]
    embeddings_.pooled = torch::cat(pooleds, 0);    // [N + M + 1, P]
  }

  std::string name() const override { return "prompts"; }
  std::vector<int64_t> sample_shape() const override { return latent_shape_; }
  int64_t condition_count() const override { return static_cast<int64_t>(prompts_.size()); }
  std::string condition_text(int64_t id) const override {
    return id >= 0 && id < condition_count() ? prompts_[static_cast<size_t>(id)].text : "";
  }
  nlohmann::json condition_metadata(int64_t id) const override {
    return id >= 0 && id < condition_count() ? prompts_[static_cast<size_t>(id)].metadata
                                             : nlohmann::json();
  }

  /// ids [n] -> the prompts' embeddings (kNullId: the empty prompt's).
  Condition conditions(const torch::Tensor& ids) const override {
    return embeddings_.conditions(ids, table(), "prompts");
  }
  /// Training prompts, uniformly.
  Condition sample_conditions(int64_t n, Rng& rng) const override {
    return conditions(rng.uniform_int(train_count_, {n}));
  }
  /// The evaluation prompts (the training ones without eval_prompts), in turn.
  Condition evaluation_conditions(int64_t n) const override {
    const int64_t first = condition_count() > train_count_ ? train_count_ : 0;
    const int64_t count = condition_count() - first;
    return conditions(first + torch::arange(n, torch::kLong).remainder(count));
  }
  torch::Tensor sample_data(int64_t, Rng&, const torch::TensorOptions&, Condition*) const override {
    throw ConfigError(
        "task 'prompts' has no data: it post-trains a given base (--base, a diffusers pipeline), "
        "it cannot pretrain one");
  }
  nlohmann::json default_model() const override {
    throw ConfigError(
        "task 'prompts' has no model of its own: --base must be a diffusers SD3 pipeline folder");
  }
  nlohmann::json spec() const override { return {{"task", name()}, {"params", params_}}; }

 private:
  nlohmann::json params_;
  std::vector<int64_t> latent_shape_;
  std::vector<Prompt> prompts_;
  int64_t train_count_ = 0;
  PromptEmbeddings embeddings_;
};

}  // namespace

TaskPtr make_prompt_task(const nlohmann::json& params) {
  if (!params.is_object())
    throw ConfigError(
        "task 'prompts' needs its files: --prompt-embeds (and --prompts, --eval-prompts) with "
        "--base, a diffusers pipeline");
  return std::make_shared<PromptTask>(params);
}

}  // namespace ramflow
