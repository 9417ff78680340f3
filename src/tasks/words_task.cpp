// The words task (see include/ramflow/words_task.h).
#include "ramflow/words_task.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>

#include <torch/torch.h>

#include "ramflow/char_encoder.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/sd3_transformer.h"
#include "ramflow/strings.h"
#include "ramflow/text_render.h"

namespace ramflow {

namespace {

const char* kWordList = "/usr/share/dict/american-english";
// Two monospaced bold fonts: letter k of a word sits at the same column in both, which a small
// model learns in a few thousand steps (docs/words.md: three proportional fonts at sizes 12-16
// anywhere in the image were 3x slower to become legible).
const std::vector<std::string> kFonts = {
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationMono-Bold.ttf"};

struct WordsOptions {
  std::string words = kWordList;
  std::vector<std::string> fonts = kFonts;
  int64_t height = 16, width = 64;
  int64_t min_letters = 3, max_letters = 5;
  int64_t min_size = 14, max_size = 14;
  double min_intensity = 0.7;
  int64_t jitter = 2;  // pixels from the centred position, per axis; -1: anywhere it fits
  int64_t held_out_every = 10;
  int64_t prompt_length = 10;
  int64_t eval_images = 2000;
  int64_t eval_repeats = 4;  // evaluation asks for each held-out word this many times in a row

  static WordsOptions from_json(const nlohmann::json& params) {
    WordsOptions o;
    if (params.is_null()) return o;
    SpecReader r(params, "task 'words'");
    o.words = r.text("words", o.words);
    if (r.has("fonts")) {
      const auto& f = r.value("fonts");
      if (!f.is_array() || f.empty())
        throw ConfigError("task 'words': field 'fonts' must be a non-empty list of font files");
      o.fonts.clear();
      for (const auto& path : f) {
        if (!path.is_string())
          throw ConfigError("task 'words': field 'fonts' must be a list of paths (strings)");
        o.fonts.push_back(path.get<std::string>());
      }
    }
    o.height = r.integer("height", o.height, 4, 1024);
    o.width = r.integer("width", o.width, 4, 4096);
    o.prompt_length = r.integer("prompt_length", o.prompt_length, 1, 256);
    o.min_letters = r.integer("min_letters", o.min_letters, 1, o.prompt_length);
    o.max_letters = r.integer("max_letters", o.max_letters, o.min_letters, o.prompt_length);
    o.min_size = r.integer("min_size", o.min_size, 4, 1024);
    o.max_size = r.integer("max_size", o.max_size, o.min_size, 1024);
    o.min_intensity = r.number("min_intensity", o.min_intensity);
    if (!(o.min_intensity > 0 && o.min_intensity <= 1))
      throw ConfigError("task 'words': field 'min_intensity' must be in (0, 1]");
    o.jitter = r.integer("jitter", o.jitter, -1, 4096);
    o.held_out_every = r.integer("held_out_every", o.held_out_every, 2, 1000000);
    o.eval_images = r.integer("eval_images", o.eval_images, 1, 1000000);
    o.eval_repeats = r.integer("eval_repeats", o.eval_repeats, 1, 1000);
    r.finish();
    return o;
  }
};

// The word list's words of min..max letters a-z, upper-cased, sorted, unique.
std::vector<std::string> read_words(const WordsOptions& o) {
  std::ifstream in(o.words);
  if (!in)
    throw InputError("task 'words': cannot read the word list " + o.words +
                     (o.words == kWordList ? " (install Debian's wamerican: scripts/setup)" : ""));
  std::set<std::string> words;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto n = static_cast<int64_t>(line.size());
    if (n < o.min_letters || n > o.max_letters) continue;
    if (!std::all_of(line.begin(), line.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
      continue;
    for (char& c : line) c = static_cast<char>(c - 'a' + 'A');
    words.insert(line);
  }
  return {words.begin(), words.end()};
}

class WordsTask : public Task {
 public:
  WordsTask(WordsOptions o, nlohmann::json params) : o_(std::move(o)), params_(std::move(params)) {
    for (const auto& f : o_.fonts) {
      if (!std::filesystem::exists(f))
        throw InputError("task 'words': font file " + f + " not found" +
                         (std::find(kFonts.begin(), kFonts.end(), f) != kFonts.end()
                              ? " (install Debian's fonts-dejavu-core and fonts-liberation2: "
                                "scripts/setup)"
                              : ""));
      renderers_.push_back(std::make_unique<TextRenderer>(f));
    }
    for (auto& w : read_words(o_))
      (fnv1a(w) % o_.held_out_every == 0 ? held_out_ : train_).push_back(w);
    if (train_.empty() || held_out_.empty())
      throw InputError("task 'words': " + o_.words + " has " + std::to_string(train_.size()) +
                       " training and " + std::to_string(held_out_.size()) + " held-out words of " +
                       std::to_string(o_.min_letters) + " to " + std::to_string(o_.max_letters) +
                       " letters a-z; both must be non-empty");
    // Every font must draw every word of the alphabet at the smallest size inside the image.
    const std::string all = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const auto& r : renderers_)
      r->measure(all, o_.min_size);  // ConfigError on a missing glyph
    encoder_.max_length(o_.prompt_length);
  }
  std::string name() const override { return "words"; }
  std::vector<int64_t> sample_shape() const override { return {1, o_.height, o_.width}; }
  int64_t condition_count() const override {
    return static_cast<int64_t>(train_.size() + held_out_.size());
  }
  std::string condition_text(int64_t id) const override {
    const auto T = static_cast<int64_t>(train_.size());
    if (id >= 0 && id < T) return train_[static_cast<size_t>(id)];
    if (id >= T && id < condition_count()) return held_out_[static_cast<size_t>(id - T)];
    return "";
  }
  Condition conditions(const torch::Tensor& ids) const override {
    auto id = ids.to(torch::kCPU, torch::kLong).contiguous();
    std::vector<std::string> words;
    const auto* p = id.data_ptr<int64_t>();
    for (int64_t i = 0; i < id.numel(); ++i) {
      TORCH_CHECK(p[i] >= kNullId && p[i] < condition_count(), "task 'words': condition id ", p[i],
                  " is outside [-1, ", condition_count(), ")");
      words.push_back(condition_text(p[i]));
    }
    return Condition(id, {{"tokens", char_tokens(words, encoder_)}}, table());
  }
  /// Training words, uniformly.
  Condition sample_conditions(int64_t n, Rng& rng) const override {
    return conditions(rng.uniform_int(static_cast<int64_t>(train_.size()), {n}));
  }
  /// Any 1 to prompt_length letters A-Z (lower case read as upper case), seen in training or not.
  Condition prompt_conditions(const std::vector<std::string>& prompts) const override {
    std::vector<std::string> words;
    for (const auto& p : prompts) {
      if (p.empty())
        throw ConfigError("task 'words': an empty prompt (a prompt is 1 to " +
                          std::to_string(o_.prompt_length) + " letters A-Z)");
      std::string w = p;
      for (char& c : w)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      words.push_back(std::move(w));
    }
    auto tokens = char_tokens(words, encoder_);  // ConfigError naming a prompt it cannot take
    const auto n = static_cast<int64_t>(words.size());
    return Condition(torch::arange(n, torch::kLong), {{"tokens", tokens}},
                     std::make_shared<TextTable>(std::move(words)));
  }
  /// The held-out words in turn, each eval_repeats times in a row: sample i asks for held-out word
  /// floor(i / eval_repeats) mod V, so that samples of one word (on different noise) measure the
  /// diversity of fonts, positions and intensities.
  Condition evaluation_conditions(int64_t n) const override {
    const auto T = static_cast<int64_t>(train_.size()), V = static_cast<int64_t>(held_out_.size());
    return conditions(T +
                      torch::arange(n, torch::kLong).div(o_.eval_repeats, "floor").remainder(V));
  }
  torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts,
                            Condition* cond) const override {
    auto c = sample_conditions(n, rng);
    auto x = render(c, rng);
    if (cond) *cond = c.to(opts.device());
    return opts.has_device() ? x.to(opts.device()) : x;
  }
  /// The held-out words in turn, each drawn once from a fixed stream (seed 0): rendered on the
  /// first call, a copy of the images on every call.
  std::optional<Split> test_split() const override {
    std::call_once(test_once_, [this] {
      Rng rng(0);
      auto c = evaluation_conditions(o_.eval_images);
      test_ = Split{render(c, rng), c};
    });
    return Split{test_->x.clone(), test_->cond};
  }
  nlohmann::json default_model() const override {
    // Patches of 4 x 4 pixels: 64 image tokens for 16 x 64 images, 2.4x faster per step than
    // patches of 2 on two CPU cores (1.2 against 2.85 s for a batch of 64, docs/words.md).
    const int64_t E = 64, P = 4;
    const auto config = SD3TransformerOptions()
                            .sample_size(std::max(o_.height, o_.width))
                            .patch_size(P)
                            .in_channels(1)
                            .out_channels(1)
                            .num_layers(6)
                            .attention_head_dim(32)
                            .num_attention_heads(4)
                            .caption_projection_dim(128)
                            .joint_attention_dim(E)
                            .pooled_projection_dim(E)
                            .pos_embed_max_size((std::max(o_.height, o_.width) + P - 1) / P)
                            .qk_norm("rms_norm")
                            .to_json();
    return {{"type", "sd3_char"},
            {"encoder", CharEncoderOptions().max_length(o_.prompt_length).dim(E).to_json()},
            {"config", config}};
  }
  nlohmann::json spec() const override { return {{"task", name()}, {"params", params_}}; }

 private:
  // The words of conditions c drawn as images [n, 1, H, W] in [-1, 1] (see the header).
  torch::Tensor render(const Condition& c, Rng& rng) const {
    const int64_t n = c.size(), H = o_.height, W = o_.width;
    const auto font = rng.uniform_int(static_cast<int64_t>(renderers_.size()), {n});
    const auto u = rng.rand({n, 4}, torch::kDouble);  // size, x, baseline, intensity
    auto fa = font.accessor<int64_t, 1>();
    auto ua = u.accessor<double, 2>();
    auto x = torch::empty({n, 1, H, W});
    std::lock_guard<std::mutex> lock(mutex_);  // renderers are not thread-safe
    for (int64_t i = 0; i < n; ++i) {
      const auto& r = *renderers_[static_cast<size_t>(fa[i])];
      const std::string word = c.text(i);
      int64_t size = o_.min_size + static_cast<int64_t>(ua[i][0] * (o_.max_size - o_.min_size + 1));
      size = std::min(size, o_.max_size);
      TextRenderer::Box box = r.measure(word, size);
      // Shrink until the ink fits with a pixel of margin on every side.
      while (size > 4 && (box.right - box.left > W - 2 || box.bottom - box.top > H - 2))
        box = r.measure(word, --size);
      // Pen start x and baseline b: ink columns x + [left, right) and rows b + [top, bottom) inside
      // [1, W - 1) and [1, H - 1).
      const int64_t x_lo = 1 - box.left, x_hi = W - 1 - box.right;
      const int64_t b_lo = 1 - box.top, b_hi = H - 1 - box.bottom;
      // Uniform in [lo, hi] (lo when the range is empty), narrowed to the centre +- jitter.
      const int64_t jitter = o_.jitter;
      auto uniform_in = [jitter](int64_t lo, int64_t hi, double u) {
        if (jitter >= 0 && hi > lo) {
          const int64_t c = lo + (hi - lo) / 2;
          lo = std::max(lo, c - jitter);
          hi = std::min(hi, c + jitter);
        }
        return lo +
               static_cast<int64_t>(u * static_cast<double>(std::max<int64_t>(hi - lo + 1, 1)));
      };
      const double intensity = o_.min_intensity + (1.0 - o_.min_intensity) * ua[i][3];
      x[i][0].copy_(r.render(word, size, uniform_in(x_lo, x_hi, ua[i][1]),
                             uniform_in(b_lo, b_hi, ua[i][2]), H, W, intensity));
    }
    return x.mul_(2.0).sub_(1.0);  // coverage in [0, 1] -> [-1, 1]
  }

  WordsOptions o_;
  nlohmann::json params_;
  std::vector<std::unique_ptr<TextRenderer>> renderers_;
  mutable std::mutex mutex_;
  mutable std::once_flag test_once_;
  mutable std::optional<Split> test_;
  std::vector<std::string> train_, held_out_;
  CharEncoderOptions encoder_;
};

}  // namespace

TaskPtr make_words_task(const nlohmann::json& params) {
  return std::make_shared<WordsTask>(WordsOptions::from_json(params), params);
}

nlohmann::json words_task_preset() {
  return {// pretraining (the shipped base model's settings, docs/words.md): label dropout for
          // guidance, EMA weights, SD3's logit-normal p(t), legibility tracked with guidance 3
          {"pretrain_steps", 2000},
          {"pretrain_batch", 64},
          {"pretrain_lr", 1e-3},
          {"pretrain_ema", 0.99},
          {"pretrain_label_dropout", 0.1},
          {"pretrain_grad_clip", 1.0},
          {"pretrain_time_dist", "logit_normal"},
          {"track_reward", "ocr"},
          {"track_cfg", 3.0},
          {"checkpoint_every", 250},
          {"eval_steps", 20},
          // post-training: the shipped base, Tesseract's reward on the condition's word, the text
          // reader as the evaluation's judge, guidance 1.5 in rollouts and evaluation (the base's
          // OCR reward there: 0.57, docs/words.md), evaluation without an exact target
          {"base", "words_base.safetensors"},
          {"reward", "ocr"},
          {"eval_classifier", "words_reader.safetensors"},
          {"eval", "reward"},
          {"groups", 4},
          {"group_size", 8},
          {"rollout_steps", 10},
          {"cfg", 1.5},
          {"eval_cfg", 1.5},
          // 60 steps, evaluated every 20: RAM's demo, and every method's length in a comparison
          {"steps", 60},
          {"eval_samples", 500},
          {"eval_every", 20},
          {"eval_curve_samples", 200},
          {"eval_kl_samples", 50},
          {"eval_kl_steps", 10},
          // RAM as released: K = 4 draws per endpoint with p(t) ∝ t, the conditional velocity in
          // the loss, rewards centred per prompt and scaled by the step's std, the old-policy EMA;
          // m 20, the demo (docs/words.md: m 10 moved exact match by +0.07 in 150 steps, m 20 by
          // +0.31 in 60, and past 60 steps legibility stalls while the Fréchet distance grows).
          // The other methods at the same lr, with their settings from the sweeps on Fashion-MNIST
          // (docs/flow-grpo.md, docs/tuning.md), except Flow-GRPO's SDE window: on words the window
          // of 2 steps lowered the reward (seed 0: 0.632 -> 0.594, 0.598 at steps 20, 40) where
          // training every step raised it (0.663, 0.664, 0.673 at steps 20, 40, 60).
          {"methods",
           {{"ram",
             {{"lr", 1e-4},
              {"multiplier", 20.0},
              {"draws", 4},
              {"time_dist", "power"},
              {"time_alpha", 1.0},
              {"ram_signal", "normalized"},
              {"ram_std_scope", "step"},
              {"ram_target_copy", "ema"}}},
            {"flow-grpo", {{"lr", 1e-4}, {"grpo_clip", 1e-4}}},
            {"nft", {{"lr", 1e-4}, {"nft_kl", 0.3}}},
            {"awm", {{"lr", 1e-4}, {"awm_kl", 0.1}}},
            {"elbo-pg", {{"lr", 1e-4}}}}}};
}

}  // namespace ramflow
