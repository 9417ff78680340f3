// report.html of a run directory or a comparison (see include/ramflow/html_report.h). The page is
// generated from the run directory's files alone: the curves go into one JSON object that a small
// script hands to Chart.js; pictures are embedded as data: URIs, so that the file stands alone.
#include "ramflow/html_report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/likelihood.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Debian's libjs-chart.js (Chart.js 3, UMD build: defines the global `Chart`).
const char* const kChartJs[] = {"/usr/share/javascript/chart.js/chart.min.js",
                                "/usr/share/javascript/chart.js/chart.umd.js",
                                "/usr/share/javascript/chart.js/chart.js"};

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// JSON inside <script>: "</" would end the element early.
std::string script_json(const json& value) {
  std::string text = value.dump();
  for (size_t at = 0; (at = text.find("</", at)) != std::string::npos; at += 3)
    text.replace(at, 2, "<\\/");
  return text;
}

// RFC 4648 base64.
std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const auto b = [&](size_t k) -> uint32_t {
      return i + k < bytes.size() ? static_cast<unsigned char>(bytes[i + k]) : 0;
    };
    const uint32_t v = (b(0) << 16) | (b(1) << 8) | b(2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::string png_uri(const fs::path& file) {
  return "data:image/png;base64," + base64(read_file(file.string()));
}

json read_json_or_null(const fs::path& file) {
  if (!fs::exists(file)) return nullptr;
  try {
    return json::parse(read_file(file.string()));
  } catch (const json::exception&) {
    return nullptr;  // being rewritten, or damaged: the page shows what it can
  }
}

// The lines of metrics.jsonl that parse (a line being appended is skipped).
std::vector<json> read_metrics(const fs::path& file) {
  std::vector<json> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    try {
      lines.push_back(json::parse(line));
    } catch (const json::exception&) {
    }
  }
  return lines;
}

// A chart for the page's script: {title, x, y, series: [{label, points: [[x, y], ...]}]}.
json chart(const std::string& title, const std::string& x, const std::string& y) {
  return {{"title", title}, {"x", x}, {"y", y}, {"series", json::array()}};
}
void add_series(json& c, const std::string& label,
                const std::vector<std::pair<double, double>>& p) {
  if (p.empty()) return;
  json points = json::array();
  for (const auto& [x, y] : p) points.push_back({x, y});
  c["series"].push_back({{"label", label}, {"points", points}});
}

// The PNGs of plots/ (the final pictures), by name.
json pictures(const fs::path& plots) {
  json out = json::array();
  if (!fs::is_directory(plots)) return out;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(plots))
    if (entry.is_regular_file() && entry.path().extension() == ".png")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) out.push_back({{"name", f.filename().string()}, {"src", png_uri(f)}});
  return out;
}

// The sample pictures of the evaluations, plots/steps/step-<k>.png, in step order: all of them up
// to kMaxStepPictures, else that many evenly spaced from the first to the last. The page is
// rewritten at every evaluation, so this bounds what each write reads and encodes (and the page's
// size) in a run of hundreds of evaluations; every picture stays in plots/steps/.
constexpr size_t kMaxStepPictures = 40;
json step_pictures(const fs::path& dir) {
  std::vector<std::pair<long long, fs::path>> found;
  if (fs::is_directory(dir))
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("step-", 0) != 0 || entry.path().extension() != ".png") continue;
      try {
        found.emplace_back(std::stoll(name.substr(5)), entry.path());
      } catch (const std::exception&) {
      }
    }
  std::sort(found.begin(), found.end());
  const size_t n = found.size(), keep = std::min(n, kMaxStepPictures);
  json out = json::array();
  for (size_t i = 0; i < keep; ++i) {
    // Index i (n - 1) / (keep - 1): 0 and n - 1 included, increasing, no repeats for keep <= n.
    const auto& [step, f] = found[keep > 1 ? i * (n - 1) / (keep - 1) : n - 1];
    out.push_back({{"step", step}, {"src", png_uri(f)}});
  }
  return out;
}

// "2026-12-06 10:41:07 UTC".
std::string now_text() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// The key numbers of a finished run's summary, in reading order: (label, "a/b" path into it).
const std::pair<const char*, const char*> kKeyNumbers[] = {
    {"method", "method"},
    {"task", "task"},
    {"steps", "steps"},
    {"reward: base", "reward_before"},
    {"reward: post-trained", "reward_after"},
    {"reward of the exact target p*", "reward_optimal"},
    {"fraction of the way to p*'s reward", "fraction_of_optimal"},
    {"distance to p*: base", "before/distance"},
    {"distance to p*: post-trained", "after/distance"},
    {"judge's accuracy: base", "before/accuracy"},
    {"judge's accuracy: post-trained", "after/accuracy"},
    {"judge's exact match: base", "before/exact_match"},
    {"judge's exact match: post-trained", "after/exact_match"},
    {"Fréchet distance: base", "before/frechet_distance"},
    {"Fréchet distance: post-trained", "after/frechet_distance"},
    {"diversity: base", "before/diversity"},
    {"diversity: post-trained", "after/diversity"},
    {"ms per training step", "ms_per_step"},
    {"seconds in all", "total_seconds"}};

std::string value_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    std::ostringstream s;
    s.precision(5);
    s << v.get<double>();
    return s.str();
  }
  return v.dump();
}

// The page's behaviour: charts from REPORT.charts, the evaluation slider, and the marks on <body>
// that say what ran (data-charts, data-drawn: charts with ink on their canvas, data-errors).
const char* const kScript = R"JS(
(function () {
  var body = document.body, errors = 0;
  window.addEventListener('error', function () { errors++; body.dataset.errors = errors; });
  var colours = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];
  var box = document.getElementById('charts'), made = 0, drawn = 0;
  if (typeof Chart === 'undefined') {
    if (REPORT.charts.length) box.innerHTML = '<p class="note">The curves need Chart.js: install Debian\'s libjs-chart.js and the page is written with it at the next evaluation.</p>';
  } else {
    REPORT.charts.forEach(function (c) {
      var div = document.createElement('div'); div.className = 'chart';
      var canvas = document.createElement('canvas'); canvas.width = 560; canvas.height = 330;
      div.appendChild(canvas); box.appendChild(div);
      var sets = c.series.map(function (s, j) {
        return {label: s.label, data: s.points.map(function (p) { return {x: p[0], y: p[1]}; }),
                borderColor: colours[j % 8], backgroundColor: colours[j % 8], borderWidth: 2,
                borderDash: j >= 8 ? [6, 3] : [], pointRadius: s.points.length <= 40 ? 3 : 0,
                showLine: true, fill: false};
      });
      var chart = new Chart(canvas, {type: 'scatter', data: {datasets: sets}, options: {
        animation: false, responsive: false,
        plugins: {title: {display: true, text: c.title, font: {size: 15}},
                  legend: {position: 'bottom', labels: {boxWidth: 14}}},
        scales: {x: {type: 'linear', title: {display: true, text: c.x}},
                 y: {title: {display: true, text: c.y}}}}});
      made++;
      var ink = 0, px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      for (var i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
      if (ink > 2000) drawn++;
      canvas.dataset.ink = ink;
      return chart;
    });
  }
  var steps = REPORT.steps, slider = document.getElementById('slider');
  if (steps.length) {
    var img = document.getElementById('step-picture'), label = document.getElementById('step-label');
    slider.max = steps.length - 1; slider.value = steps.length - 1;
    var show = function () { var s = steps[slider.value]; img.src = s.src; label.textContent = 'step ' + s.step; };
    slider.addEventListener('input', show); show();
  } else {
    document.getElementById('steps').style.display = 'none';
  }
  body.dataset.charts = made; body.dataset.drawn = drawn; body.dataset.errors = errors;
})();
)JS";

const char* const kStyle = R"CSS(
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
.status { color: #555; } .note { color: #a33; }
#charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { border: 1px solid #ddd; padding: 6px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
img { max-width: 100%; border: 1px solid #eee; } #step-picture { image-rendering: pixelated; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
)CSS";

// A preformatted text at the end of the page (the configuration, summary.json, report.md), shown
// or folded.
struct Text {
  std::string heading, text;
  bool open = false;
};

// The page around REPORT: title, status, key numbers, charts, step slider, pictures, and texts.
std::string page(const std::string& title, const std::string& status, bool refresh,
                 const json& summary_rows, const json& report, const std::vector<Text>& texts) {
  std::ostringstream h;
  h << "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  // While the run goes on, the page reloads itself: an open tab follows the run.
  if (refresh) h << "<meta http-equiv=\"refresh\" content=\"30\">\n";
  h << "<title>" << html_escape(title) << "</title>\n<style>" << kStyle << "</style>\n";
  if (const std::string js = chart_js_path(); !js.empty()) {
    std::string code = read_file(js);
    // "</script" inside the code would end the element early (Chart.js 3.9 has none).
    for (size_t at = 0; (at = code.find("</script", at)) != std::string::npos; at += 3)
      code.replace(at, 2, "<\\/");
    h << "<script>\n" << code << "\n</script>\n";
  }
  h << "</head>\n<body data-charts=\"0\" data-drawn=\"0\" data-errors=\"0\">\n<h1>"
    << html_escape(title) << "</h1>\n<p class=\"status\">" << html_escape(status) << "</p>\n";
  if (!summary_rows.empty()) {
    h << "<h2>Key numbers</h2>\n<table>\n";
    for (const auto& row : summary_rows)
      h << "<tr><th>" << html_escape(row[0].get<std::string>()) << "</th><td>"
        << html_escape(row[1].get<std::string>()) << "</td></tr>\n";
    h << "</table>\n";
  }
  h << "<h2>Curves</h2>\n<div id=\"charts\"></div>\n";
  h << "<div id=\"steps\"><h2>Samples at each evaluation</h2>\n"
    << "<p><input id=\"slider\" type=\"range\" min=\"0\" max=\"0\" step=\"1\" style=\"width: "
       "420px\"> "
    << "<span id=\"step-label\"></span></p>\n<img id=\"step-picture\" alt=\"samples\"></div>\n";
  if (!report["pictures"].empty()) {
    h << "<h2>Pictures</h2>\n";
    for (const auto& p : report["pictures"])
      h << "<h3>" << html_escape(p["name"].get<std::string>()) << "</h3>\n<img src=\""
        << p["src"].get<std::string>() << "\" alt=\"" << html_escape(p["name"].get<std::string>())
        << "\">\n";
  }
  for (const auto& t : texts)
    h << "<h2>" << html_escape(t.heading) << "</h2>\n<details" << (t.open ? " open" : "")
      << "><summary>show</summary><pre>" << html_escape(t.text) << "</pre></details>\n";
  json data = report;
  data.erase("pictures");  // already in the page
  h << "<script>\nvar REPORT = " << script_json(data) << ";\n" << kScript << "</script>\n";
  h << "</body></html>\n";
  return h.str();
}

}  // namespace

std::string chart_js_path() {
  for (const char* p : kChartJs)
    if (fs::exists(p)) return p;
  return "";
}

void write_run_report(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const json config = read_json_or_null(dir / "config.json");
  const json summary = read_json_or_null(dir / "summary.json");
  const auto metrics = read_metrics(dir / "metrics.jsonl");
  // Curves: training steps (batch reward, loss) and evaluations (reward, terms, judge, distance).
  json reward = chart("reward", "training step", "mean reward"),
       terms = chart("reward terms (evaluation)", "training step", "mean"),
       judge = chart("the evaluation judge", "training step", "rate"),
       frechet = chart("Fréchet distance to the test images", "training step", "Fréchet distance"),
       distance = chart("energy distance to the exact target p*", "training step", "distance"),
       loss = chart("training loss", "training step", "loss");
  std::vector<std::pair<double, double>> eval_r, batch_r, dist, fid, rate, lossp;
  std::map<std::string, std::vector<std::pair<double, double>>> term;
  std::string rate_name;
  int64_t last_step = 0;
  for (const auto& m : metrics) {
    auto num = [&](const char* k) { return m.contains(k) && m[k].is_number(); };
    if (m.contains("eval_step")) {
      const double s = m["eval_step"].get<double>();
      if (num("reward")) eval_r.emplace_back(s, m["reward"].get<double>());
      if (num("distance")) dist.emplace_back(s, m["distance"].get<double>());
      if (num("frechet_distance")) fid.emplace_back(s, m["frechet_distance"].get<double>());
      if (m.contains("judge") && m["judge"].is_string()) {
        rate_name = m["judge"].get<std::string>();
        if (num(rate_name.c_str())) rate.emplace_back(s, m[rate_name].get<double>());
      }
      if (m.contains("reward_terms") && m["reward_terms"].is_object())
        for (const auto& [k, v] : m["reward_terms"].items())
          if (v.is_number()) term[k].emplace_back(s, v.get<double>());
    } else if (num("step")) {
      const double s = m["step"].get<double>();
      last_step = std::max<int64_t>(last_step, m["step"].get<int64_t>());
      if (num("reward_mean")) batch_r.emplace_back(s, m["reward_mean"].get<double>());
      if (num("loss")) lossp.emplace_back(s, m["loss"].get<double>());
    }
  }
  add_series(reward, "evaluation (held-out, fixed noise)", eval_r);
  add_series(reward, "training batches", batch_r);
  for (const auto& [k, p] : term) add_series(terms, k, p);
  add_series(judge, rate_name, rate);
  add_series(frechet, "Fréchet distance", fid);
  add_series(distance, "distance to p*", dist);
  add_series(loss, "loss", lossp);
  json charts = json::array();
  for (const json* c : {&reward, &terms, &judge, &frechet, &distance, &loss})
    if (!(*c)["series"].empty()) charts.push_back(*c);

  const bool finished = summary.is_object();
  const int64_t steps =
      config.is_object() ? config.value("steps", config.value("pretrain_steps", int64_t{0})) : 0;
  std::ostringstream status;
  if (finished)
    status << "finished: " << summary.value("steps", steps) << " steps; page written "
           << now_text();
  else
    status << "running: step " << last_step << (steps > 0 ? " of " + std::to_string(steps) : "")
           << "; page written " << now_text() << " (it reloads itself every 30 s)";
  json rows = json::array();
  if (finished) {
    for (const auto& [label, path] : kKeyNumbers) {
      const json::json_pointer at(std::string("/") + path);
      if (summary.contains(at) && !summary[at].is_null() && !summary[at].is_object())
        rows.push_back({label, value_text(summary[at])});
    }
    // The KL as a number only where the estimate says something (KLEstimate::reliable).
    const json& after = summary.value("after", json::object());
    auto number = [&](const char* key) {
      return after.contains(key) && after[key].is_number() ? after[key].get<double>()
                                                           : std::nan("");
    };
    if (std::isfinite(number("kl_to_base")))
      rows.push_back({"KL to base (final evaluation)",
                      KLEstimate{number("kl_to_base"), number("kl_to_base_se")}.text()});
  }
  const std::string kind = config.is_object() && config.contains("method") ? "finetune" : "run";
  std::string title = "ramflow " + kind + ": " + fs::path(run_dir).filename().string();
  if (config.is_object() && config.contains("method") && config["method"].is_string())
    title += " (" + config["method"].get<std::string>() + " on " +
             config.value("task", std::string("?")) + ")";
  const json report = {{"charts", charts},
                       {"steps", step_pictures(dir / "plots" / "steps")},
                       {"pictures", pictures(dir / "plots")}};
  std::vector<Text> texts;
  if (finished) texts.push_back({"Summary (summary.json)", summary.dump(2)});
  if (config.is_object()) texts.push_back({"Configuration (config.json)", config.dump(2)});
  write_file_atomic((dir / "report.html").string(),
                    page(title, status.str(), !finished, rows, report, texts));
}

void write_compare_report(const std::string& dir_text) {
  const fs::path dir(dir_text);
  const json report = read_json_or_null(dir / "report.json");
  json reward = chart("evaluation reward of every run", "training step", "mean reward"),
       distance = chart("energy distance to the exact target p*", "training step", "distance"),
       judge = chart("the evaluation judge", "training step", "rate"),
       frechet = chart("Fréchet distance to the test images", "training step", "Fréchet distance");
  if (report.is_object() && report.contains("runs"))
    for (const auto& run : report["runs"]) {
      const std::string label = run.value("variant", run.value("method", std::string("?"))) +
                                " seed " + std::to_string(run.value("seed", 0));
      auto series = [&](const char* key) {
        std::vector<std::pair<double, double>> p;
        if (!run.contains("step") || !run.contains(key)) return p;
        const auto& xs = run["step"];
        const auto& ys = run[key];
        for (size_t i = 0; i < std::min(xs.size(), ys.size()); ++i)
          if (xs[i].is_number() && ys[i].is_number())
            p.emplace_back(xs[i].get<double>(), ys[i].get<double>());
        return p;
      };
      add_series(reward, label, series("reward"));
      add_series(distance, label, series("distance"));
      add_series(judge, label, series("judge_rate"));
      add_series(frechet, label, series("frechet_distance"));
    }
  json charts = json::array();
  for (const json* c : {&reward, &distance, &judge, &frechet})
    if (!(*c)["series"].empty()) charts.push_back(*c);
  const bool finished = fs::exists(dir / "summary.json");
  const std::string status =
      std::string(finished ? "finished" : "running") + "; page written " + now_text();
  std::vector<Text> texts;
  if (fs::exists(dir / "report.md"))
    texts.push_back({"Report (report.md)", read_file((dir / "report.md").string()), true});
  if (const json config = read_json_or_null(dir / "config.json"); config.is_object())
    texts.push_back({"Configuration (config.json)", config.dump(2)});
  const json data = {
      {"charts", charts}, {"steps", json::array()}, {"pictures", pictures(dir / "plots")}};
  write_file_atomic((dir / "report.html").string(),
                    page("ramflow compare: " + dir.filename().string(), status, !finished,
                         json::array(), data, texts));
}

}  // namespace ramflow
