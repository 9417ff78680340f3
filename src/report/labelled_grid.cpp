// Image grids with headings and row labels (see include/ramflow/labelled_grid.h).
#include "ramflow/labelled_grid.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/image.h"
#include "ramflow/text_render.h"

namespace ramflow {
namespace {

const char* const kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
constexpr int64_t kHeadingPx = 20, kLabelPx = 16;    // pixels per em
constexpr int64_t kPad = 3, kGap = 16, kMargin = 8;  // between tiles, grids, and at the edges

// The font, or nullopt when it is not installed (the picture is then drawn without words).
std::optional<TextRenderer> label_font() {
  if (!std::filesystem::exists(kFont)) return std::nullopt;
  try {
    return std::optional<TextRenderer>(std::in_place, kFont);
  } catch (const Error&) {
    return std::nullopt;
  }
}

// `text`'s ink width at `px`, or 0 when the font lacks one of its characters.
int64_t text_width(const TextRenderer& font, const std::string& text, int64_t px) {
  try {
    const auto box = font.measure(text, px);
    return box.right - std::min<int64_t>(box.left, 0);
  } catch (const ConfigError&) {
    return 0;
  }
}

// Draws `text` in black at `px` with the pen at (x, baseline) onto `canvas` (uint8 [H, W] or
// [H, W, 3], white ground): pixel = min(pixel, round(255 (1 - coverage))). Text the font cannot
// draw is left out.
void draw_text(torch::Tensor& canvas, const TextRenderer& font, const std::string& text, int64_t px,
               int64_t x, int64_t baseline) {
  if (text_width(font, text, px) == 0) return;
  const auto ink = font.render(text, px, x, baseline, canvas.size(0), canvas.size(1));  // [H, W]
  auto shade = ink.mul(-255.0).add(255.0).round().clamp(0, 255).to(torch::kByte);
  if (canvas.dim() == 3) shade = shade.unsqueeze(2).expand_as(canvas);
  canvas.copy_(torch::minimum(canvas, shade));
}

// `text`, shortened with "..." until it is at most `width` pixels wide at `px`.
std::string fit(const TextRenderer& font, std::string text, int64_t px, int64_t width) {
  if (text_width(font, text, px) <= width) return text;
  while (!text.empty() && text_width(font, text + "...", px) > width) text.pop_back();
  return text + "...";
}

}  // namespace

int64_t legible_scale(int64_t tile_h, int64_t tile_w, int64_t panels, int64_t cols) {
  TORCH_CHECK(tile_h > 0 && tile_w > 0 && panels > 0 && cols > 0, "legible_scale: empty grid");
  const int64_t tall = (56 + tile_h - 1) / tile_h;                             // ceil(56 / H)
  const int64_t across = 2400 / std::max<int64_t>(1, panels * cols * tile_w);  // floor
  return std::max<int64_t>(1, std::min(tall, across));
}

void save_labelled_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                         const std::vector<std::string>& headings,
                         const std::vector<std::string>& row_labels, int64_t rows, int64_t cols) {
  TORCH_CHECK(!batches.empty(), "save_labelled_grids: no batches");
  TORCH_CHECK(headings.empty() || headings.size() == batches.size(),
              "save_labelled_grids: ", headings.size(), " headings for ", batches.size(),
              " batches");
  TORCH_CHECK(row_labels.empty() || static_cast<int64_t>(row_labels.size()) == rows,
              "save_labelled_grids: ", row_labels.size(), " row labels for ", rows, " rows");
  const int64_t H = batches[0].size(2), W = batches[0].size(3);
  const int64_t s = legible_scale(H, W, static_cast<int64_t>(batches.size()), cols);
  // Each batch enlarged s times (nearest neighbour: pixels stay sharp) and tiled:
  // [rows * cols, C, H, W] -> [rows * cols, C, s H, s W] -> grid [H', W'(, 3)].
  std::vector<torch::Tensor> grids;
  for (const auto& x : batches) {
    TORCH_CHECK(x.dim() == 4 && x.size(2) == H && x.size(3) == W && x.size(1) == batches[0].size(1),
                "save_labelled_grids: batches must share [C, H, W], got ", x.sizes());
    const auto big = x.detach().cpu().repeat_interleave(s, 2).repeat_interleave(s, 3);
    grids.push_back(image_grid(big, rows, cols, kPad));
  }
  const std::optional<TextRenderer> font = label_font();
  const bool headed = font && !headings.empty(), labelled = font && !row_labels.empty();
  int64_t label_w = 0;
  if (labelled)
    for (const auto& label : row_labels)
      label_w = std::max(label_w, text_width(*font, label, kLabelPx));
  label_w = labelled ? std::min<int64_t>(label_w, 240) + kMargin : 0;
  const int64_t head_h = headed ? kHeadingPx * 2 : 0;
  const int64_t grid_h = grids[0].size(0);
  int64_t total_w = kMargin + label_w;
  for (const auto& g : grids) total_w += g.size(1) + kGap;
  total_w += kMargin - kGap;
  auto sizes = grids[0].sizes().vec();
  sizes[0] = kMargin + head_h + grid_h + kMargin;
  sizes[1] = total_w;
  auto canvas = torch::full(sizes, 255, torch::kByte);  // [H'', W''(, 3)] white
  int64_t x = kMargin + label_w;
  for (size_t i = 0; i < grids.size(); ++i) {
    const int64_t w = grids[i].size(1);
    canvas.narrow(0, kMargin + head_h, grid_h).narrow(1, x, w).copy_(grids[i]);
    if (headed) {
      // The heading centred over its grid, its baseline a quarter em above the grid.
      const std::string text = fit(*font, headings[i], kHeadingPx, w);
      const int64_t tw = text_width(*font, text, kHeadingPx);
      draw_text(canvas, *font, text, kHeadingPx, x + (w - tw) / 2,
                kMargin + head_h - kHeadingPx / 2);
    }
    x += w + kGap;
  }
  if (labelled)
    for (int64_t r = 0; r < rows; ++r) {
      // Each label right-aligned against the first grid, centred on its row of tiles.
      const std::string text = fit(*font, row_labels[r], kLabelPx, label_w - kMargin);
      const int64_t tw = text_width(*font, text, kLabelPx);
      const int64_t centre = kMargin + head_h + kPad + r * (s * H + kPad) + s * H / 2;
      draw_text(canvas, *font, text, kLabelPx, kMargin + label_w - kMargin - tw,
                centre + kLabelPx * 35 / 100);
    }
  write_png(path, canvas);
}

}  // namespace ramflow
