// The OCR reward (see include/ramflow/ocr_reward.h): Tesseract in process, one engine per thread.
#include "ramflow/ocr_reward.h"

#include <leptonica/allheaders.h>
#include <tesseract/baseapi.h>
#include <tesseract/resultiterator.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/reward.h"
#include "ramflow/strings.h"

namespace ramflow {

namespace {

/// Lower-cased, every space (and newline) removed: the form both texts are compared in.
std::string normalised(const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    if (!std::isspace(c)) out.push_back(static_cast<char>(std::tolower(c)));
  return out;
}

}  // namespace

double ocr_text_score(const std::string& target, const std::string& recognised) {
  const std::string t = normalised(target), r = normalised(recognised);
  if (t.empty()) throw std::invalid_argument("ocr_text_score: the target text is empty");
  // d = 0 when the target appears in what was read (extra letters around it are not penalised).
  const size_t d = r.find(t) != std::string::npos ? 0 : edit_distance(r, t);
  return 1.0 - static_cast<double>(std::min(d, t.size())) / static_cast<double>(t.size());
}

namespace {

namespace fs = std::filesystem;

using Engine = std::unique_ptr<tesseract::TessBaseAPI, void (*)(tesseract::TessBaseAPI*)>;

void end_engine(tesseract::TessBaseAPI* api) {
  api->End();
  delete api;
}

/// The folder of Tesseract's language data: the spec's, else $TESSDATA_PREFIX, else Debian's.
fs::path tessdata_folder(const std::string& given, const std::string& file) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("TESSDATA_PREFIX"); env && *env) return env;
  for (const char* dir :
       {"/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata"})
    if (fs::exists(fs::path(dir) / file)) return dir;
  return "/usr/share/tesseract-ocr/5/tessdata";
}

/// Engines made alike, each used by one thread at a time: taken from the pool, given back after.
class EnginePool {
 public:
  EnginePool(std::string folder, std::string language, std::string alphabet)
      : folder_(std::move(folder)), language_(std::move(language)), alphabet_(std::move(alphabet)) {
    give(make());  // the first engine now: a language file Tesseract refuses fails the build
  }

  Engine take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        Engine e = std::move(free_.back());
        free_.pop_back();
        return e;
      }
    }
    return make();
  }

  void give(Engine e) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(e));
  }

 private:
  Engine make() const {
    Engine api(new tesseract::TessBaseAPI(), end_engine);
    // Tesseract's messages go nowhere: a library does not print.
    api->SetVariable("debug_file", "/dev/null");
    if (api->Init(folder_.c_str(), language_.c_str(), tesseract::OEM_LSTM_ONLY) != 0)
      throw ConfigError("reward 'ocr': Tesseract could not load language '" + language_ +
                        "' from " + folder_);
    api->SetPageSegMode(tesseract::PSM_SINGLE_LINE);
    api->SetVariable("tessedit_char_whitelist", alphabet_.c_str());
    api->SetVariable("user_defined_dpi", "300");  // no resolution guess (and no warning about it)
    return api;
  }

  std::string folder_, language_, alphabet_;
  std::mutex mutex_;
  std::vector<Engine> free_;
};

constexpr int kBorder = 8;  // ground-coloured margin around each image, in output pixels

class OcrReward : public Reward {
 public:
  OcrReward(std::string text, std::string alphabet, bool light_ink, int64_t upscale,
            double min_confidence, std::string language, std::string tessdata_given,
            const fs::path& folder)
      : text_(std::move(text)),
        alphabet_(std::move(alphabet)),
        light_ink_(light_ink),
        upscale_(upscale),
        min_confidence_(min_confidence),
        language_(std::move(language)),
        tessdata_given_(std::move(tessdata_given)),
        pool_(std::make_unique<EnginePool>(folder.string(), language_, alphabet_)) {}

  torch::Tensor score(const torch::Tensor& x0, const Condition& cond) const override {
    return score_terms(x0, cond).total;
  }

  /// The score, and the term "exact_match": 1 where the recognised text equals the target (both
  /// normalised as the score's; the score's 1 also counts a target inside longer text).
  ScoredBatch score_terms(const torch::Tensor& x0, const Condition& cond) const override {
    TORCH_CHECK(x0.dim() == 4 && (x0.size(1) == 1 || x0.size(1) == 3),
                "reward 'ocr' scores images [B, C, H, W] with C = 1 or 3, got ", x0.sizes());
    const int64_t B = x0.size(0);
    std::vector<std::string> targets(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) {
      targets[static_cast<size_t>(i)] = text_.empty() ? cond.text(i) : text_;
      if (normalised(targets[static_cast<size_t>(i)]).empty())
        throw ConfigError(
            "reward 'ocr': sample " + std::to_string(i) +
            " has no text to read (score a task whose conditions are texts, or give the field "
            "'text')");
    }
    // [B, C, H, W] in [-1, 1] -> grey [B, H, W] in [0, 1] -> the paper's brightness in bytes:
    // white ground, dark ink (light ink is inverted).
    auto grey = ((x0.detach().to(torch::kCPU, torch::kFloat).mean(1) + 1.0) * 0.5).clamp(0, 1);
    if (light_ink_) grey = 1.0 - grey;
    const auto bytes = (grey * 255.0).round().to(torch::kByte).contiguous();  // [B, H, W]
    const int64_t H = x0.size(2), W = x0.size(3);
    std::vector<float> scores(static_cast<size_t>(B)), exact(static_cast<size_t>(B));
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      Engine api = pool_->take();
      for (int64_t i = begin; i < end; ++i) {
        const auto k = static_cast<size_t>(i);
        const std::string text = read(*api, bytes[i].data_ptr<uint8_t>(), H, W);
        scores[k] = static_cast<float>(ocr_text_score(targets[k], text));
        exact[k] = normalised(text) == normalised(targets[k]) ? 1.0f : 0.0f;
      }
      pool_->give(std::move(api));
    });
    ScoredBatch out;
    out.total = torch::tensor(scores).to(x0.device());                // [B]
    out.terms["exact_match"] = torch::tensor(exact).to(x0.device());  // [B]
    return out;
  }

  bool differentiable() const override { return false; }

  nlohmann::json spec() const override {
    nlohmann::json s = {{"type", "ocr"},
                        {"alphabet", alphabet_},
                        {"ink", light_ink_ ? "light" : "dark"},
                        {"upscale", upscale_},
                        {"min_confidence", min_confidence_},
                        {"language", language_}};
    if (!text_.empty()) s["text"] = text_;
    if (!tessdata_given_.empty()) s["tessdata"] = tessdata_given_;
    return s;
  }

 private:
  /// Tesseract's reading of one H x W byte image (white ground), "" when it reads nothing.
  std::string read(tesseract::TessBaseAPI& api, const uint8_t* image, int64_t H, int64_t W) const {
    const int64_t s = upscale_, h = H * s + 2 * kBorder, w = W * s + 2 * kBorder;
    Pix* pix = pixCreate(static_cast<int>(w), static_cast<int>(h), 8);
    pixSetAllArbitrary(pix, 255);
    l_uint32* data = pixGetData(pix);
    const int wpl = pixGetWpl(pix);
    for (int64_t y = 0; y < H * s; ++y) {
      l_uint32* line = data + (y + kBorder) * wpl;
      for (int64_t x = 0; x < W * s; ++x)
        SET_DATA_BYTE(line, static_cast<int>(x + kBorder), image[(y / s) * W + x / s]);
    }
    api.SetImage(pix);
    // The words Tesseract is sure enough of, one after the other (spaces do not count). On an image
    // with no text, single-line mode still names letters, at confidence 0.
    std::string out;
    if (api.Recognize(nullptr) == 0) {
      std::unique_ptr<tesseract::ResultIterator> it(api.GetIterator());
      if (it) do {
          std::unique_ptr<char[]> word(it->GetUTF8Text(tesseract::RIL_WORD));
          if (word && it->Confidence(tesseract::RIL_WORD) > min_confidence_) out += word.get();
        } while (it->Next(tesseract::RIL_WORD));
    }
    api.Clear();
    pixDestroy(&pix);
    return out;
  }

  std::string text_, alphabet_;
  bool light_ink_;
  int64_t upscale_;
  double min_confidence_;
  std::string language_, tessdata_given_;
  std::unique_ptr<EnginePool> pool_;  // engines are state, not the reward's value: const score()
};

}  // namespace

RewardPtr make_ocr_reward(const nlohmann::json& spec, int64_t) {
  SpecReader r(spec, "reward 'ocr'");
  r.text("type");
  const std::string text = r.text("text", ""),
                    alphabet = r.text("alphabet", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                    ink = r.text("ink", "light"), language = r.text("language", "eng"),
                    tessdata = r.text("tessdata", "");
  const int64_t upscale = r.integer("upscale", 1, 1, 8);
  const double min_confidence = r.number("min_confidence", 10.0);
  r.finish();
  if (!(min_confidence >= 0 && min_confidence < 100))
    throw ConfigError("reward 'ocr': field 'min_confidence' must be in [0, 100), got " +
                      std::to_string(min_confidence));
  if (alphabet.empty()) throw ConfigError("reward 'ocr': field 'alphabet' is empty");
  if (ink != "light" && ink != "dark")
    throw ConfigError("reward 'ocr': field 'ink' must be \"light\" or \"dark\", got \"" + ink +
                      "\"");
  if (language.empty() || language.find('/') != std::string::npos)
    throw ConfigError("reward 'ocr': field 'language' must name a language file, got \"" +
                      language + "\"");
  const std::string file = language + ".traineddata";
  const fs::path folder = tessdata_folder(tessdata, file);
  if (!fs::exists(folder / file))
    throw ConfigError("reward 'ocr': no Tesseract language data " + (folder / file).string() +
                      " (Debian: apt install tesseract-ocr-" + language +
                      "; or the field 'tessdata' / $TESSDATA_PREFIX)");
  return std::make_shared<OcrReward>(text, alphabet, ink == "light", upscale, min_confidence,
                                     language, tessdata, folder);
}

}  // namespace ramflow
