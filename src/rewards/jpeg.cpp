// JPEG size rewards, the classic non-differentiable rewards of diffusion RL (DDPO's compressibility
// and incompressibility): each image is encoded with libjpeg at a fixed quality and scored by its
// size,
//   jpeg-compressibility     r = -(size in kB)    (simpler, smoother images)
//   jpeg-incompressibility   r = +(size in kB)    (busier images)
// with 1 kB = 1000 bytes. Images are [B, C, H, W], C = 1 (grey) or 3 (RGB), values in the data
// range
// [-1, 1], mapped to 8-bit pixels round((x + 1) / 2 * 255), clamped. Encoding is deterministic, so
// the same image always gets the same score; the reward has no gradient.
#include <jpeglib.h>

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/reward.h"

namespace ramflow {

namespace {

// libjpeg reports errors through a callback that must not return: jump back and throw.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
};

void on_jpeg_error(j_common_ptr info) {
  std::longjmp(reinterpret_cast<JpegError*>(info->err)->jump, 1);
}

// Encoded size in bytes of one 8-bit image, rows of width * channels bytes.
size_t jpeg_size(const uint8_t* pixels, int height, int width, int channels, int quality) {
  jpeg_compress_struct c{};
  JpegError err{};
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_jpeg_error;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    std::free(buffer);
    throw Error("jpeg reward: libjpeg failed to encode an image");
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = static_cast<JDIMENSION>(width);
  c.image_height = static_cast<JDIMENSION>(height);
  c.input_components = channels;
  c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    auto* row =
        const_cast<JSAMPROW>(pixels + static_cast<size_t>(c.next_scanline) * width * channels);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::free(buffer);
  return size;
}

class JpegReward : public Reward {
 public:
  JpegReward(std::string name, double sign, int quality)
      : name_(std::move(name)), sign_(sign), quality_(quality) {}

  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    TORCH_CHECK(x0.dim() == 4 && (x0.size(1) == 1 || x0.size(1) == 3), "reward '", name_,
                "' scores images [B, C, H, W] with C = 1 or 3, got ", x0.sizes());
    const int64_t B = x0.size(0), C = x0.size(1), H = x0.size(2), W = x0.size(3);
    // [B, C, H, W] in [-1, 1] -> [B, H, W, C] bytes
    const auto pixels = ((x0.detach().to(torch::kCPU, torch::kFloat) + 1.0) * 127.5)
                            .round()
                            .clamp(0, 255)
                            .to(torch::kByte)
                            .permute({0, 2, 3, 1})
                            .contiguous();
    std::vector<float> kb(static_cast<size_t>(B));
    const auto* p = pixels.data_ptr<uint8_t>();
    for (int64_t b = 0; b < B; ++b)
      kb[static_cast<size_t>(b)] = static_cast<float>(
          sign_ *
          static_cast<double>(jpeg_size(p + b * H * W * C, static_cast<int>(H), static_cast<int>(W),
                                        static_cast<int>(C), quality_)) /
          1000.0);
    return torch::tensor(kb).to(x0.device());  // [B]
  }
  bool differentiable() const override { return false; }
  nlohmann::json spec() const override { return {{"type", name_}, {"quality", quality_}}; }

 private:
  std::string name_;
  double sign_;
  int quality_;
};

RewardPtr make_jpeg(const nlohmann::json& spec, const std::string& name, double sign) {
  SpecReader r(spec, "reward '" + name + "'");
  r.text("type");
  const double quality = r.number("quality", 95.0);
  r.finish();
  if (!(quality >= 1 && quality <= 100) || quality != static_cast<int>(quality))
    throw ConfigError("reward '" + name + "': field 'quality' must be an integer in [1, 100]");
  return std::make_shared<JpegReward>(name, sign, static_cast<int>(quality));
}

}  // namespace

RewardPtr make_jpeg_compressibility_reward(const nlohmann::json& spec, int64_t) {
  return make_jpeg(spec, "jpeg-compressibility", -1.0);
}

RewardPtr make_jpeg_incompressibility_reward(const nlohmann::json& spec, int64_t) {
  return make_jpeg(spec, "jpeg-incompressibility", +1.0);
}

}  // namespace ramflow
