#pragma once
// PNG plots with MathGL (headless). Inputs are plain vectors, so this header needs no torch.
#include <string>
#include <utility>
#include <vector>

namespace ramflow {

struct Series {
  std::string label;
  std::vector<double> x, y;
  std::string style;  // MathGL line style, e.g. palette(0) + "2"; empty = the next palette colour
  /// Optional band lo <= y <= hi (e.g. mean ± std over seeds), drawn translucent in the series'
  /// colour.
  std::vector<double> lo = {}, hi = {};
};

/// Colour i of the Okabe–Ito palette (distinguishable with every common colour-vision deficiency),
/// as a MathGL colour "{xRRGGBB}"; eight colours, then repeats.
std::string palette(size_t i);
/// The style of curve i of a plot: palette colour i, thick; past the palette's eight colours the
/// same colours again with another dash pattern (and marker, with `marker`), so that no two curves
/// look alike.
std::string series_style(size_t i, bool marker = false);

/// Reference lines: black and grey with distinct dash patterns, never a palette colour.
inline const char* const kOptimumStyle = "k2|";       // the exact target's level: dashed black
inline const char* const kTargetStyle = "k2;";        // a target level: dash-dotted black
inline const char* const kBaseStyle = "{x606060}2:";  // the base model's level: dotted grey

/// Curves on one set of axes, legend outside the plot on the right. Horizontal reference lines:
/// `hlines` (value, label, style).
struct HLine {
  double y;
  std::string label;
  std::string style;
};
void line_plot(const std::string& path, const std::string& title, const std::string& xlabel,
               const std::string& ylabel, const std::vector<Series>& series,
               const std::vector<HLine>& hlines = {});

/// Side-by-side panels of samples. 2-D data: scatter plots on shared axes; 1-D data: histograms.
/// points[i] holds panel i's samples row-major ([n, dim]); dim is 1 or 2 (higher: first two
/// coordinates).
struct SamplePanel {
  std::string title;
  std::vector<float> points;
  int64_t dim = 2;
  /// Points to mark on 2-D panels (e.g. the reward's centre), as large crosses, with `marks_label`.
  std::vector<std::pair<double, double>> marks;
  std::string marks_label;
};
void sample_panels(const std::string& path, const std::vector<SamplePanel>& panels);

}  // namespace ramflow
