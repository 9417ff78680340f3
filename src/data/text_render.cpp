// Text drawn with FreeType (see include/ramflow/text_render.h).
#include "ramflow/text_render.h"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <functional>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

struct TextRenderer::Impl {
  FT_Library library = nullptr;
  FT_Face face = nullptr;
  ~Impl() {
    if (face) FT_Done_Face(face);
    if (library) FT_Done_FreeType(library);
  }
};

namespace {

/// One rendered glyph: its coverage bitmap and where its top-left pixel falls relative to the pen's
/// start on the baseline.
struct Placed {
  const FT_Bitmap* bitmap;
  int64_t left, top;
};

}  // namespace

TextRenderer::TextRenderer(const std::string& font_path)
    : impl_(std::make_unique<Impl>()), font_(font_path) {
  if (FT_Init_FreeType(&impl_->library) != 0) throw Error("text renderer: FreeType did not start");
  if (FT_New_Face(impl_->library, font_path.c_str(), 0, &impl_->face) != 0)
    throw ConfigError("text renderer: FreeType cannot read the font file '" + font_path + "'");
}

TextRenderer::~TextRenderer() = default;

namespace {

/// Calls `draw` for each glyph of `text` at `pixel_size`, the pen advancing in 26.6 fixed point
/// (1/64 pixel) by each advance plus the kerning between neighbours.
void for_each_glyph(FT_Face face, const std::string& font, const std::string& text,
                    int64_t pixel_size, const std::function<void(const Placed&)>& draw) {
  if (pixel_size < 1 || pixel_size > 4096)
    throw ConfigError("text renderer: pixel size " + std::to_string(pixel_size) +
                      " is outside [1, 4096]");
  if (FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(pixel_size)) != 0)
    throw ConfigError("text renderer: font '" + font + "' has no size " +
                      std::to_string(pixel_size));
  FT_Pos pen = 0;  // 26.6
  FT_UInt previous = 0;
  for (unsigned char c : text) {
    const FT_UInt index = FT_Get_Char_Index(face, c);
    if (index == 0)
      throw ConfigError(std::string("text renderer: font '") + font + "' has no glyph for '" +
                        static_cast<char>(c) + "'");
    if (previous && FT_HAS_KERNING(face)) {
      FT_Vector kern;
      if (FT_Get_Kerning(face, previous, index, FT_KERNING_DEFAULT, &kern) == 0) pen += kern.x;
    }
    if (FT_Load_Glyph(face, index, FT_LOAD_RENDER) != 0)
      throw Error(std::string("text renderer: FreeType could not draw '") + static_cast<char>(c) +
                  "' of '" + font + "'");
    const FT_GlyphSlot g = face->glyph;
    draw({&g->bitmap, (pen >> 6) + g->bitmap_left, -static_cast<int64_t>(g->bitmap_top)});
    pen += g->advance.x;
    previous = index;
  }
}

}  // namespace

TextRenderer::Box TextRenderer::measure(const std::string& text, int64_t pixel_size) const {
  Box box;
  bool any = false;
  for_each_glyph(impl_->face, font_, text, pixel_size, [&](const Placed& p) {
    if (p.bitmap->width == 0 || p.bitmap->rows == 0) return;  // a space: no ink
    const Box g{p.left, p.top, p.left + p.bitmap->width, p.top + p.bitmap->rows};
    box = any ? Box{std::min(box.left, g.left), std::min(box.top, g.top),
                    std::max(box.right, g.right), std::max(box.bottom, g.bottom)}
              : g;
    any = true;
  });
  return box;
}

torch::Tensor TextRenderer::render(const std::string& text, int64_t pixel_size, int64_t x,
                                   int64_t baseline, int64_t H, int64_t W, double intensity) const {
  TORCH_CHECK(H > 0 && W > 0, "text renderer: image size ", H, " x ", W);
  auto image = torch::zeros({H, W}, torch::kFloat);  // [H, W]
  float* out = image.data_ptr<float>();
  const float scale = static_cast<float>(intensity) / 255.0f;
  for_each_glyph(impl_->face, font_, text, pixel_size, [&](const Placed& p) {
    const FT_Bitmap& b = *p.bitmap;
    for (unsigned r = 0; r < b.rows; ++r) {
      const int64_t y = baseline + p.top + r;
      if (y < 0 || y >= H) continue;
      for (unsigned c = 0; c < b.width; ++c) {
        const int64_t xx = x + p.left + c;
        if (xx < 0 || xx >= W) continue;
        const float v = b.buffer[r * b.pitch + c] * scale;
        out[y * W + xx] = std::max(out[y * W + xx], v);
      }
    }
  });
  return image;
}

}  // namespace ramflow
