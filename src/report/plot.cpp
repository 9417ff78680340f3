// PNG plots with MathGL (see include/ramflow/plot.h).
#include "ramflow/plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <mgl2/mgl.h>

#include "ramflow/errors.h"

namespace ramflow {
namespace {

// Okabe & Ito, "Color Universal Design" (2008): blue, orange, bluish green, vermillion, reddish
// purple, sky blue, yellow, black.
const char* kOkabeIto[] = {"0072B2", "E69F00", "009E73", "D55E00",
                           "CC79A7", "56B4E9", "F0E442", "000000"};

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  void pad(double frac) {
    if (!std::isfinite(lo)) {
      lo = 0;
      hi = 1;
    }
    double w = hi - lo;
    if (w <= 0) w = std::max(1e-3, std::abs(hi));
    lo -= frac * w;
    hi += frac * w;
  }
};

mglData to_mgl(const std::vector<double>& v) {
  mglData d(static_cast<long>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) d.a[i] = v[i];
  return d;
}

void write_png(mglGraph& gr, const std::string& path) {
  gr.WritePNG(path.c_str(), "", false);
  if (gr.Message() && *gr.Message() && std::string(gr.Message()).find("rror") != std::string::npos)
    throw IOError(path + ": plot failed (" + gr.Message() + ")");
}

// The colour part of a MathGL style: "{xRRGGBB}" or the first letter.
std::string colour_of(const std::string& style) {
  if (!style.empty() && style[0] == '{') return style.substr(0, style.find('}') + 1);
  return style.empty() ? "k" : style.substr(0, 1);
}

}  // namespace

std::string palette(size_t i) { return std::string("{x") + kOkabeIto[i % 8] + "}"; }

std::string series_style(size_t i, bool marker) {
  // MathGL: '-' solid, '|' long dashes, ';' dash-dot, '=' short dashes; marks o, s (square), d, ^.
  static const char* kDash[] = {"-", "|", ";", "="};
  static const char* kMark[] = {"o", "s", "d", "^"};
  const size_t round = (i / 8) % 4;
  return palette(i) + "3" + kDash[round] + (marker ? kMark[round] : "");
}

void line_plot(const std::string& path, const std::string& title, const std::string& xlabel,
               const std::string& ylabel, const std::vector<Series>& series,
               const std::vector<HLine>& hlines) {
  Range xr, yr;
  for (const auto& s : series) {
    for (double v : s.x) xr.add(v);
    for (double v : s.y) yr.add(v);
    for (double v : s.lo) yr.add(v);
    for (double v : s.hi) yr.add(v);
  }
  for (const auto& h : hlines) yr.add(h.y);
  xr.pad(0.0);
  yr.pad(0.08);
  mglGraph gr(0, 1200, 560);
  gr.SetFontSize(3.0);
  // The axes take the left 70%: the legend sits to their right, never over the curves.
  gr.InPlot(0.0, 0.70, 0.0, 1.0, false);
  gr.Title(title.c_str(), "", 5);
  gr.SetRanges(xr.lo, xr.hi, yr.lo, yr.hi);
  gr.Axis();
  gr.Grid("xy", "h-");
  gr.Label('x', xlabel.c_str(), 0);
  gr.Label('y', ylabel.c_str(), 0);
  gr.SetAlphaDef(0.3);
  gr.SetMarkSize(2.0);
  size_t k = 0;
  std::vector<std::string> styles;
  for (const auto& s : series) styles.push_back(s.style.empty() ? series_style(k++) : s.style);
  // Bands first, so that every line is drawn over them.
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    if (s.x.empty() || s.lo.size() != s.x.size() || s.hi.size() != s.x.size()) continue;
    gr.Alpha(true);
    gr.Region(to_mgl(s.x), to_mgl(s.lo), to_mgl(s.hi), colour_of(styles[i]).c_str());
    gr.Alpha(false);
  }
  for (const auto& h : hlines) {
    std::vector<double> xs = {xr.lo, xr.hi}, ys = {h.y, h.y};
    const std::string st = h.style.empty() ? kTargetStyle : h.style;
    gr.Plot(to_mgl(xs), to_mgl(ys), st.c_str());
    gr.AddLegend(h.label.c_str(), st.c_str());
  }
  for (size_t i = 0; i < series.size(); ++i) {
    if (series[i].x.empty()) continue;
    // MathGL draws a one-point curve as an outsized mark; a zero-length segment gets the normal
    // mark.
    auto x = series[i].x, y = series[i].y;
    if (x.size() == 1) x.push_back(x[0]), y.push_back(y[0]);
    gr.Plot(to_mgl(x), to_mgl(y), styles[i].c_str());
    gr.AddLegend(series[i].label.c_str(), styles[i].c_str());
  }
  gr.InPlot(0.68, 1.0, 0.0, 0.92, false);  // the right 30%: the legend, top left, boxed
  gr.Legend(2, "#", "size 5");
  write_png(gr, path);
}

void sample_panels(const std::string& path, const std::vector<SamplePanel>& panels) {
  if (panels.empty()) return;
  const int n = static_cast<int>(panels.size());
  const bool one_d = panels.front().dim == 1;
  mglGraph gr(0, 420 * n, 460);
  gr.SetFontSize(4.0);
  Range xr, yr;
  for (const auto& p : panels) {
    const auto d = static_cast<size_t>(std::max<int64_t>(1, p.dim));
    for (size_t i = 0; i + d <= p.points.size(); i += d) {
      xr.add(p.points[i]);
      if (!one_d) yr.add(p.points[i + 1]);
    }
  }
  xr.pad(0.05);
  if (!one_d) {
    // Square axes over the joint range, so shapes are not distorted.
    Range both;
    both.add(xr.lo), both.add(xr.hi), both.add(yr.lo), both.add(yr.hi);
    both.pad(0.02);
    xr = yr = both;
  }
  for (int i = 0; i < n; ++i) {
    const auto& p = panels[i];
    const auto d = static_cast<size_t>(std::max<int64_t>(1, p.dim));
    gr.SubPlot(n, 1, i, "");
    gr.Title(p.title.c_str(), "", 4);
    std::vector<double> xs, ys;
    for (size_t j = 0; j + d <= p.points.size(); j += d) {
      xs.push_back(p.points[j]);
      if (!one_d) ys.push_back(p.points[j + 1]);
    }
    if (one_d) {
      // Histogram as a density: 60 bins over the shared range.
      constexpr int kBins = 60;
      std::vector<double> centers(kBins), dens(kBins, 0.0);
      const double w = (xr.hi - xr.lo) / kBins;
      for (int b = 0; b < kBins; ++b) centers[b] = xr.lo + (b + 0.5) * w;
      for (double v : xs) {
        int b = static_cast<int>((v - xr.lo) / w);
        if (b >= 0 && b < kBins) dens[b] += 1.0 / (static_cast<double>(xs.size()) * w);
      }
      double top = *std::max_element(dens.begin(), dens.end());
      gr.SetRanges(xr.lo, xr.hi, 0, top > 0 ? 1.1 * top : 1.0);
      gr.Axis();
      gr.Bars(to_mgl(centers), to_mgl(dens), palette(0).c_str());
    } else {
      gr.SetRanges(xr.lo, xr.hi, yr.lo, yr.hi);
      gr.Axis();
      gr.Grid("xy", "h-");
      gr.SetMarkSize(0.35);
      gr.Plot(to_mgl(xs), to_mgl(ys), (" " + palette(0) + ".").c_str());
      if (!p.marks.empty()) {
        std::vector<double> mx, my;
        for (const auto& [x, y] : p.marks) mx.push_back(x), my.push_back(y);
        gr.SetMarkSize(1.8);
        gr.Plot(to_mgl(mx), to_mgl(my),
                (" " + palette(3) + "4x").c_str());  // vermillion over the blue samples
        if (!p.marks_label.empty()) {
          gr.ClearLegend();  // each panel its own legend
          gr.AddLegend(p.marks_label.c_str(), (" " + palette(3) + "4x").c_str());
          gr.Legend(0, "#");
        }
      }
    }
  }
  write_png(gr, path);
}

}  // namespace ramflow
