// Throughput of the OCR reward: words drawn with FreeType (light on dark, the words task's look)
// and read by the `ocr` reward, in images per second at each thread count. Prints one JSON line per
// thread count, with the mean score (1 for clean renders that Tesseract reads exactly).
//
//   ramflow_ocr_bench [--images N] [--height H] [--width W] [--pixel-size P] [--font FILE]
//                     [--threads 1,2]
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <ramflow/ramflow.h>
#include <torch/torch.h>

namespace {

/// Words of the alphabet's letters, each drawn with the pen at x = 3 and the baseline at 3/4 of
/// the height.
struct Batch {
  std::vector<std::string> words;
  torch::Tensor images;  // [N, 1, H, W] in [-1, 1]
};

Batch words_batch(int64_t n, int64_t H, int64_t W, int64_t pixel_size, const std::string& font) {
  const std::vector<std::string> pool = {"CAT",   "HOUSE", "RIVER", "GARDEN", "PLANET", "MUSIC",
                                         "ZEBRA", "QUICK", "JUMPS", "WORLD",  "FLOW",   "TEXT"};
  ramflow::TextRenderer renderer(font);
  Batch b;
  std::vector<torch::Tensor> images;
  for (int64_t i = 0; i < n; ++i) {
    b.words.push_back(pool[static_cast<size_t>(i) % pool.size()]);
    images.push_back(renderer.render(b.words.back(), pixel_size, 3, H * 3 / 4, H, W) * 2 - 1);
  }
  b.images = torch::stack(images).unsqueeze(1);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ramflow;
  int64_t n = 240, H = 24, W = 96, pixel_size = 16;
  std::string font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", threads = "1,2";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--images")
      n = std::atoll(value().c_str());
    else if (a == "--height")
      H = std::atoll(value().c_str());
    else if (a == "--width")
      W = std::atoll(value().c_str());
    else if (a == "--pixel-size")
      pixel_size = std::atoll(value().c_str());
    else if (a == "--font")
      font = value();
    else if (a == "--threads")
      threads = value();
    else {
      std::cerr << "usage: ramflow_ocr_bench [--images N] [--height H] [--width W] "
                   "[--pixel-size P] [--font FILE] [--threads 1,2]\n";
      return 2;
    }
  }
  try {
    if (n < 1 || H < 1 || W < 1) throw ConfigError("--images, --height and --width must be >= 1");
    const Batch batch = words_batch(n, H, W, pixel_size, font);
    const auto cond =
        Condition::classes(torch::arange(n), std::make_shared<ramflow::TextTable>(batch.words));
    const auto reward = make_reward({{"type", "ocr"}}, H * W);
    reward->score(batch.images.slice(0, 0, 4), cond.slice(0, 4));  // engines made, warm
    for (const auto& t : split(threads)) {
      set_threads(std::stoi(t));
      const auto t0 = std::chrono::steady_clock::now();
      const auto scores = reward->score(batch.images, cond);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << nlohmann::json{{"threads", std::stoi(t)},
                                  {"images", n},
                                  {"height", H},
                                  {"width", W},
                                  {"seconds", s},
                                  {"images_per_second", static_cast<double>(n) / s},
                                  {"mean_score", scores.mean().item<double>()}}
                       .dump()
                << std::endl;
    }
    return 0;
  } catch (const ConfigError& e) {
    std::cerr << "ramflow_ocr_bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ramflow_ocr_bench: " << e.what() << "\n";
    return 1;
  }
}
