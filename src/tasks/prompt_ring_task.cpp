// The text-conditioned toy task (see include/ramflow/prompt_ring_task.h).
#include "ramflow/prompt_ring_task.h"

#include <array>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/text_mlp_velocity.h"

namespace ramflow {
namespace {

constexpr int64_t kPrompts = 8, kTokens = 4, kContextDim = 8, kPooledDim = 6;
constexpr double kRadius = 4.0, kStd = 0.15;
const std::array<const char*, kPrompts> kDirections = {
    "east or north-east", "north-east or north", "north or north-west", "north-west or west",
    "west or south-west", "south-west or south", "south or south-east", "south-east or east"};

class PromptRingTask : public Task {
 public:
  PromptRingTask() {
    // Rows 0..K-1: the prompts' embeddings; row K: the empty prompt's (the null condition).
    Rng rng(0);
    embeddings_.context = rng.randn({kPrompts + 1, kTokens, kContextDim});  // [K + 1, L, C]
    embeddings_.pooled = rng.randn({kPrompts + 1, kPooledDim});             // [K + 1, P]
  }
  std::string name() const override { return "ring-prompts"; }
  std::vector<int64_t> sample_shape() const override { return {2}; }
  int64_t num_classes() const override { return 0; }
  int64_t condition_count() const override { return kPrompts; }
  std::string condition_text(int64_t id) const override {
    return id >= 0 && id < kPrompts ? kDirections[static_cast<size_t>(id)] : "";
  }
  nlohmann::json condition_metadata(int64_t id) const override {
    return {{"angles", {360.0 * id / kPrompts, 360.0 * (id + 1) / kPrompts}}};
  }

  /// ids [n] -> the prompts' embeddings (kNullId: the empty prompt's).
  Condition conditions(const torch::Tensor& ids) const override {
    return embeddings_.conditions(ids, table(), "ring-prompts");
  }

  /// Prompt k asks for modes k and k + 1 of the ring, each with probability 1/2: x = mu_j + 0.15
  /// eps.
  torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts,
                            Condition* cond) const override {
    const auto ids = rng.uniform_int(kPrompts, {n});  // [n]
    const auto mode = ids + rng.uniform_int(2, {n});  // [n]: k or k + 1
    const auto angle = mode.to(torch::kDouble) * (2.0 * M_PI / kPrompts);
    const auto mu = kRadius * torch::stack({torch::cos(angle), torch::sin(angle)}, 1);  // [n, 2]
    auto x = (mu + kStd * rng.randn({n, 2}, torch::kDouble)).to(torch::kFloat);
    if (cond) *cond = conditions(ids).to(opts.device());
    return x.to(opts.device());
  }
  nlohmann::json default_model() const override {
    return TextMLPVelocityOptions(2, kContextDim, kPooledDim).to_json();
  }
  nlohmann::json spec() const override { return {{"task", name()}, {"params", nullptr}}; }

 private:
  PromptEmbeddings embeddings_;
};

}  // namespace

TaskPtr make_prompt_ring_task(const nlohmann::json& params) {
  if (!params.is_null())
    throw ConfigError("task 'ring-prompts' takes no parameters, got " + params.dump());
  return std::make_shared<PromptRingTask>();
}

}  // namespace ramflow
