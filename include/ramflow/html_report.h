#pragma once
// report.html: one self-contained page per run directory for a person to read in a browser,
// offline: the curves (Chart.js, inlined from Debian's libjs-chart.js), the sample pictures of each
// evaluation (a slider), the final pictures, the summary and the configuration. It is written from
// what the run directory holds, atomically, and rewritten as the run goes on (at each evaluation),
// so that a user can watch it. Without Chart.js the page shows the pictures and the numbers, and
// says which package draws the curves.
//
// The page marks itself when its script has run, for tests and tools: <body data-charts="N"
// data-drawn="K" data-errors="E"> (N charts made, K of them with ink on their canvas, E script
// errors).
#include <string>

namespace ramflow {

/// The Chart.js file the pages inline (Debian's libjs-chart.js), or "" when it is not installed.
std::string chart_js_path();

/// RUN/report.html of a finetune or pretrain run: config.json, metrics.jsonl (training steps and
/// evaluations: reward, its named terms, the judge's rate, Fréchet distance, distance to the exact
/// target, loss), summary.json once the run has finished, the PNGs of plots/ and the sample
/// pictures of each evaluation (plots/steps/step-*.png). Throws IOError when it cannot be written.
void write_run_report(const std::string& run_dir);

/// DIR/report.html of a comparison: every run's curves from report.json (reward, the judge's rate
/// and Fréchet distance where present), the tables of report.md and the PNGs of plots/.
void write_compare_report(const std::string& dir);

}  // namespace ramflow
