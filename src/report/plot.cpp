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

constexpr int kWidth = 1200, kHeight = 560;  // line plots: pixels

// MathGL reads text as TeX: '_' makes a subscript, '^' a superscript, '\' starts a command. Legend
// labels are plain text (method options like nft_kl=0.3): each of those characters escaped. Titles
// and axis labels may use TeX (p_{ref}).
std::string plain(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '_' || c == '^' || c == '\\' || c == '{' || c == '}') out += '\\';
    out += c;
  }
  return out;
}

// Puts the next axes box at [x1, x2] x [y1, y2] of the canvas (fractions, y upwards). MathGL
// shrinks an InPlot region by its plot factor (1.55, room for rotated 3-D views) around the
// region's centre, so the region given to it is the box grown by that factor; tick labels and axis
// labels go into the margin around the box.
void axes_box(mglGraph& gr, double x1, double x2, double y1, double y2) {
  constexpr double kPlotFactor = 1.55;
  const double cx = (x1 + x2) / 2, cy = (y1 + y2) / 2, hx = (x2 - x1) / 2 * kPlotFactor,
               hy = (y2 - y1) / 2 * kPlotFactor;
  gr.InPlot(cx - hx, cx + hx, cy - hy, cy + hy, false);
}

// Text centred at (x, y), fractions of the canvas, in `scale` times the title size: drawn in a
// full-canvas box, whose coordinates [-1, 1] span the whole canvas.
void text_at(mglGraph& gr, const std::string& text, double x, double y, double scale) {
  axes_box(gr, 0.0, 1.0, 0.0, 1.0);
  gr.SetRanges(-1, 1, -1, 1);
  gr.Puts(mglPoint(2 * x - 1, 2 * y - 1), text.c_str(), ":C", -1.5 * scale);
}
// A title near the top of the canvas, centred at x (the whole canvas: 0.5).
void title_at_top(mglGraph& gr, const std::string& title, double x = 0.5, double scale = 1.0) {
  text_at(gr, title, x, 0.93, scale);
}
// A caption line at the bottom of the canvas.
void caption_at_bottom(mglGraph& gr, const std::string& text) {
  text_at(gr, text, 0.5, 0.035, 0.75);
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
  bool marks = false;
  for (const auto& s : series) {
    for (double v : s.x) xr.add(v);
    for (double v : s.y) yr.add(v);
    for (double v : s.lo) yr.add(v);
    for (double v : s.hi) yr.add(v);
    marks = marks || s.style.find_first_of("osd^x") != std::string::npos;
  }
  for (const auto& h : hlines) yr.add(h.y);
  xr.pad(marks ? 0.03 : 0.0);  // a marker at the edge is drawn whole
  yr.pad(0.08);
  mglGraph gr(0, kWidth, kHeight);
  gr.SetFontSize(2.4);
  title_at_top(gr, title);
  // The axes box: the left three quarters, below the title; the legend to its right.
  axes_box(gr, 0.11, 0.76, 0.13, 0.87);
  gr.SetRanges(xr.lo, xr.hi, yr.lo, yr.hi);
  gr.SetRotatedText(false);  // tick labels upright
  gr.Axis();
  gr.SetRotatedText(true);  // the y label along its axis
  gr.Grid("xy", "h-");
  gr.Label('x', xlabel.c_str(), 0);
  gr.Label('y', ylabel.c_str(), 0, "value 0.32");
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
  size_t longest = 0;
  for (const auto& h : hlines) {
    std::vector<double> xs = {xr.lo, xr.hi}, ys = {h.y, h.y};
    const std::string st = h.style.empty() ? kTargetStyle : h.style;
    gr.Plot(to_mgl(xs), to_mgl(ys), st.c_str());
    gr.AddLegend(plain(h.label).c_str(), st.c_str());
    longest = std::max(longest, h.label.size());
  }
  for (size_t i = 0; i < series.size(); ++i) {
    if (series[i].x.empty()) continue;
    // MathGL draws a one-point curve as an outsized mark; a zero-length segment gets the normal
    // mark.
    auto x = series[i].x, y = series[i].y;
    if (x.size() == 1) x.push_back(x[0]), y.push_back(y[0]);
    gr.Plot(to_mgl(x), to_mgl(y), styles[i].c_str());
    gr.AddLegend(plain(series[i].label).c_str(), styles[i].c_str());
    longest = std::max(longest, series[i].label.size());
  }
  // The legend in the right quarter, top left, boxed; long labels in a smaller font so that the
  // longest fits (about 17 characters at the full size).
  axes_box(gr, 0.775, 0.995, 0.13, 0.87);
  const double size = 5.5 * std::min(1.0, 17.0 / static_cast<double>(std::max<size_t>(longest, 1)));
  gr.Legend(2, "#", ("size " + std::to_string(size)).c_str());
  write_png(gr, path);
}

void sample_panels(const std::string& path, const std::vector<SamplePanel>& panels) {
  if (panels.empty()) return;
  const int n = static_cast<int>(panels.size());
  const bool one_d = panels.front().dim == 1;
  mglGraph gr(0, 440 * n, 500);
  gr.SetFontSize(2.2);
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
  std::string marks_label;
  for (int i = 0; i < n; ++i) {
    const auto& p = panels[i];
    const auto d = static_cast<size_t>(std::max<int64_t>(1, p.dim));
    // Panel i: the i-th column; its title above the box, the box below with room for the ticks.
    const double w = 1.0 / n, left = i * w;
    // Long titles in a smaller font, so that each stays over its own panel (about 28 characters
    // fit at the full size).
    title_at_top(gr, p.title, left + w / 2,
                 std::min(1.0, 28.0 / static_cast<double>(std::max<size_t>(p.title.size(), 1))));
    axes_box(gr, left + 0.16 * w, left + 0.96 * w, 0.15, 0.85);
    gr.SetFontSize(3.3);  // tick labels: MathGL scales text with the box, smaller than the canvas
    std::vector<double> xs, ys;
    for (size_t j = 0; j + d <= p.points.size(); j += d) {
      xs.push_back(p.points[j]);
      if (!one_d) ys.push_back(p.points[j + 1]);
    }
    gr.SetRotatedText(false);  // tick labels upright
    if (one_d) {
      // Histogram as a density: 60 bins over the shared range.
      constexpr int kBins = 60;
      std::vector<double> centers(kBins), dens(kBins, 0.0);
      const double bw = (xr.hi - xr.lo) / kBins;
      for (int b = 0; b < kBins; ++b) centers[b] = xr.lo + (b + 0.5) * bw;
      for (double v : xs) {
        int b = static_cast<int>((v - xr.lo) / bw);
        if (b >= 0 && b < kBins) dens[b] += 1.0 / (static_cast<double>(xs.size()) * bw);
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
      gr.Plot(to_mgl(xs), to_mgl(ys), (std::string(" ") + palette(0) + ".").c_str());
      if (!p.marks.empty()) {
        std::vector<double> mx, my;
        for (const auto& [x, y] : p.marks) mx.push_back(x), my.push_back(y);
        gr.SetMarkSize(1.1);
        gr.Plot(to_mgl(mx), to_mgl(my), (std::string(" ") + palette(3) + "6x").c_str());
        marks_label = p.marks_label;
      }
    }
    gr.SetRotatedText(true);
    gr.SetFontSize(2.2);
  }
  // What the crosses mark: one caption under the panels, not a legend over the data.
  if (!marks_label.empty()) caption_at_bottom(gr, "crosses (vermillion): " + marks_label);
  write_png(gr, path);
}

}  // namespace ramflow
