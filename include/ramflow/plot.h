#pragma once
// PNG plots with MathGL (headless). Inputs are plain vectors, so this header needs no torch.
#include <string>
#include <vector>

namespace ramflow {

struct Series {
  std::string label;
  std::vector<double> x, y;
  std::string style;  // MathGL line style, e.g. "b" (blue line), "r|" (red dashed); empty = automatic
};

/// Curves on one set of axes, with a legend. Horizontal reference lines: `hlines` (value, label, style).
struct HLine {
  double y;
  std::string label;
  std::string style;
};
void line_plot(const std::string& path, const std::string& title, const std::string& xlabel,
               const std::vector<Series>& series, const std::vector<HLine>& hlines = {});

/// Side-by-side panels of samples. 2-D data: scatter plots on shared axes; 1-D data: histograms.
/// points[i] holds panel i's samples row-major ([n, dim]); dim is 1 or 2 (higher: first two coordinates).
struct SamplePanel {
  std::string title;
  std::vector<float> points;
  int64_t dim = 2;
};
void sample_panels(const std::string& path, const std::vector<SamplePanel>& panels);

}  // namespace ramflow
