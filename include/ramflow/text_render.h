#pragma once
// Text drawn into images with FreeType, for tasks whose images show words. A renderer holds one
// font file; it is not thread-safe (one renderer per thread).
//
// Coordinates are pixels, x to the right and y down; the pen starts at (x, baseline) and moves by
// each glyph's advance (with the font's kerning). A glyph's ink is FreeType's anti-aliased coverage
// in [0, 1], times `intensity`, over a ground of 0; where glyphs overlap the larger value is kept.
#include <cstdint>
#include <memory>
#include <string>

#include <torch/types.h>

namespace ramflow {

class TextRenderer {
 public:
  /// Loads a TrueType / OpenType file; ConfigError naming the file when FreeType cannot read it.
  explicit TextRenderer(const std::string& font_path);
  ~TextRenderer();
  TextRenderer(const TextRenderer&) = delete;
  TextRenderer& operator=(const TextRenderer&) = delete;

  /// The ink's extent: columns [left, right) and rows [top, bottom) relative to the pen's start on
  /// the baseline (top < 0 is above it). Empty text: all 0.
  struct Box {
    int64_t left = 0, top = 0, right = 0, bottom = 0;
  };
  /// The extent of `text` at `pixel_size` pixels per em; ConfigError when the font has no glyph for
  /// one of its characters (naming the character and the font).
  Box measure(const std::string& text, int64_t pixel_size) const;
  /// `text` at `pixel_size` with the pen's start at (x, baseline), in an image [H, W] (float32);
  /// ink outside the image is cut off (measure says where the ink falls).
  torch::Tensor render(const std::string& text, int64_t pixel_size, int64_t x, int64_t baseline,
                       int64_t H, int64_t W, double intensity = 1.0) const;
  const std::string& font() const { return font_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string font_;
};

}  // namespace ramflow
