// The report of `ramflow compare`: statistics over seeds, report.md, report.json and plots (see
// src/jobs/compare.h).
#include <algorithm>
#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include "jobs/compare.h"
#include "jobs/report.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/likelihood.h"
#include "ramflow/method.h"
#include "ramflow/metrics.h"
#include "ramflow/plot.h"
#include "ramflow/strings.h"

namespace ramflow::jobs {
namespace {

nlohmann::json stat_json(const MeanStd& s) {
  return {{"mean", json_number(s.mean)}, {"std", json_number(s.std)}, {"n", s.n}};
}
std::string stat_text(const MeanStd& s, int digits = 3) {
  if (s.n == 0) return "-";
  return fixed(s.mean, digits) + " ± " + fixed(s.std, digits);
}

// A configuration's run length and optimiser settings: steps, lr and, for a method that reads it,
// m. They differ between configurations where a task presets a method (words: RAM's m 20).
std::string settings_text(const Variant& v) {
  std::ostringstream s;
  s << v.cfg.integer("steps") << " steps, lr " << v.cfg.number("lr");
  if (v.options.contains("multiplier")) s << ", m = " << v.options["multiplier"].get<double>();
  return s.str();
}

// The first evaluation at which the reward reaches `target`: its step and seconds (NaN if never).
std::pair<double, double> time_to(const RunCurve& c, double target) {
  for (size_t i = 0; i < c.reward.size(); ++i)
    if (c.reward[i] >= target) return {c.step[i], c.seconds[i]};
  return {std::nan(""), std::nan("")};
}

// Mean over the seeds of one method's curves, point by point (the curves share their eval steps).
std::vector<double> mean_of(const std::vector<const RunCurve*>& runs,
                            std::vector<double> RunCurve::*field) {
  size_t n = SIZE_MAX;
  for (const RunCurve* c : runs) n = std::min(n, (c->*field).size());
  std::vector<double> out(n == SIZE_MAX ? 0 : n, 0.0);
  for (const RunCurve* c : runs)
    for (size_t i = 0; i < out.size(); ++i)
      out[i] += (c->*field)[i] / static_cast<double>(runs.size());
  return out;
}

// mean ± std over the runs, pointwise, as the band [mean - std, mean + std] (empty for a single
// run).
std::pair<std::vector<double>, std::vector<double>> band_of(
    const std::vector<const RunCurve*>& runs, std::vector<double> RunCurve::*field) {
  if (runs.size() < 2) return {};
  const auto mean = mean_of(runs, field);
  std::vector<double> lo(mean.size()), hi(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    std::vector<double> at_i;
    for (const RunCurve* c : runs) at_i.push_back((c->*field)[i]);
    const double sd = mean_std(at_i).std;
    lo[i] = mean[i] - sd;
    hi[i] = mean[i] + sd;
  }
  return {lo, hi};
}

// The report, section by section: aggregate() the runs per configuration (and the target reward),
// the exact frontier(), the plots(), markdown() with report.json, and the summary().
struct Report {
  explicit Report(const CompareResults& results) : r(results) {}
  const CompareResults& r;
  const ComparePlan& plan = r.plan;
  const Config& cfg = r.cfg;
  const EvalResult& before = r.before;
  const std::vector<RunCurve>& curves = r.curves;
  const int64_t seeds = cfg.integer("seeds");
  const int64_t n_eval = before.n;
  const double m = cfg.number("multiplier");
  const bool exact = r.evaluator.has_target();
  double target_reward = r.target_reward;
  const double target_diversity = r.target_diversity;
  const Task& task = r.task;
  const Reward& reward = r.reward;
  const double reward_optimal = exact ? r.evaluator.target().reward_optimal : std::nan("");
  const double kl_optimal = exact ? r.evaluator.target().kl_optimal : std::nan("");

  std::map<std::string, std::vector<const RunCurve*>> by_variant;  // the finished runs per label
  nlohmann::json report;                                           // report.json
  std::vector<std::vector<std::string>> rows, cost_rows, image_rows;
  // Image tasks: the judge's rate ("accuracy" or "exact_match", EvalCurve) and the reward's terms,
  // as the finished runs name them.
  std::string rate_name = "accuracy";
  std::vector<std::string> terms;
  bool judged = false;
  // Per variant, the mean over seeds of the final KL and reward (for the frontier plot), and the
  // steps and seconds to the target.
  std::map<std::string, std::pair<MeanStd, MeanStd>> final_point, to_target;
  std::vector<double> front_kl, front_reward;  // the exact frontier's trusted points
  std::vector<std::string> kl_failed;          // labels left out of the frontier plot

  const char* rate_label() const { return rate_name == "exact_match" ? "exact match" : "accuracy"; }

  static double peak(const RunCurve& c) {
    return *std::max_element(c.reward.begin(), c.reward.end());
  }

  void aggregate(JobIO io) {
    for (const auto& c : curves)
      if (c.error.empty()) {
        by_variant[c.variant].push_back(&c);
        rate_name = c.rate_name;
        judged = judged || !std::isnan(c.final_rate());
        for (const auto& [term, values] : c.reward_terms)
          if (std::find(terms.begin(), terms.end(), term) == terms.end()) terms.push_back(term);
      }
    if (!plan.fixed_target &&
        !plan.fraction_target) {  // the target method's peak, now that its runs are done
      std::vector<double> peaks;
      for (const RunCurve* c : by_variant[plan.target_variant]) peaks.push_back(peak(*c));
      if (peaks.empty())
        throw NumericalError("compare: every run of the target '" + plan.target_variant +
                             "' failed");
      target_reward = mean_std(peaks).mean;
      io.log << "target reward " << fixed(target_reward) << ": the peak of " << plan.target_variant
             << "\n";
    }
    const double gap = reward_optimal - before.reward_mean;  // NaN without the exact target
    report = {
        {"task", task.name()},
        {"reward", reward.spec()},
        {"multiplier", m},
        {"steps", max_steps()},
        {"seeds", seeds},
        {"sweep", cfg.raw("sweep")},
        {"reward_base", before.reward_mean},
        {"evaluation", cfg.text("eval")},
        {"reward_optimal", json_number(reward_optimal)},
        {"kl_optimal", json_number(kl_optimal)},
        {"target_reward", target_reward},
        {"target_source", plan.fixed_target      ? std::string("--target-reward")
                          : plan.fraction_target ? "0.9 of the way from the base to reward_optimal"
                                                 : "peak of " + plan.target_variant},
        {"target_diversity", target_diversity},
        {"methods", nlohmann::json::object()},
        {"runs", nlohmann::json::array()}};
    rows = {{"method", "final reward", "of optimal", "KL to base", "distance to p*", "diversity",
             "steps to target", "seconds to target", "ms/step"}};
    cost_rows = {{"method", "NFE/endpoint/step", "reward evals/step"}};
    image_rows = {{"method"}};
    for (const auto& term : terms) image_rows[0].push_back("reward: " + term);
    if (judged)
      for (const char* col : {rate_label(), "Frechet distance", "diversity"})
        image_rows[0].push_back(col);
    for (const auto& var : plan.variants) {
      const std::string& name = var.label;
      const auto& runs = by_variant[name];
      std::vector<double> final_r, frac, peak_r, dist, div, st, sec, ms, nfe, revals, kl, acc, fid;
      std::map<std::string, std::vector<double>> term_final;
      for (const RunCurve* c : runs) {
        final_r.push_back(c->reward.back());
        frac.push_back(gap != 0 ? (c->reward.back() - before.reward_mean) / gap : 0.0);
        peak_r.push_back(peak(*c));
        dist.push_back(c->distance.back());
        div.push_back(c->diversity.back());
        // An estimate that says nothing (KLEstimate::reliable) is left out of the mean; a run
        // file from before standard errors were recorded counts as it is.
        const bool no_se = !std::isfinite(c->kl_to_base_se);
        kl.push_back(no_se || KLEstimate{c->kl_to_base, c->kl_to_base_se}.reliable()
                         ? c->kl_to_base
                         : std::nan(""));
        acc.push_back(c->final_rate());
        fid.push_back(c->final_frechet());
        for (const auto& [term, values] : c->reward_terms)
          if (!values.empty()) term_final[term].push_back(values.back());
        const auto [s_to, sec_to] = time_to(*c, target_reward);
        st.push_back(s_to);
        sec.push_back(sec_to);
        ms.push_back(c->ms_per_step);
        const double n_steps = std::max(1.0, c->step.back());
        nfe.push_back(c->nfe_total.back() / n_steps);
        revals.push_back(c->reward_evals.back() / n_steps);
      }
      const MeanStd reached = mean_std(st);
      final_point[name] = {mean_std(kl), mean_std(final_r)};
      to_target[name] = {reached, mean_std(sec)};
      report["methods"][name] = {{"method", var.method},
                                 {"sweep", var.sweep},
                                 {"steps", var.cfg.integer("steps")},
                                 {"lr", var.cfg.number("lr")},
                                 {"options", var.options},
                                 {"runs", runs.size()},
                                 {"failed", seeds - static_cast<int64_t>(runs.size())},
                                 {"reward_final", stat_json(mean_std(final_r))},
                                 {"fraction_of_optimal", stat_json(mean_std(frac))},
                                 {"reward_peak", stat_json(mean_std(peak_r))},
                                 {"kl_to_base", stat_json(mean_std(kl))},
                                 {"distance_final", stat_json(mean_std(dist))},
                                 {"diversity_final", stat_json(mean_std(div))},
                                 {rate_name + "_final", stat_json(mean_std(acc))},
                                 {"frechet_distance_final", stat_json(mean_std(fid))},
                                 {"reward_terms_final", nlohmann::json::object()},
                                 {"steps_to_target", stat_json(reached)},
                                 {"seconds_to_target", stat_json(mean_std(sec))},
                                 {"reached_target", reached.n},
                                 {"ms_per_step", stat_json(mean_std(ms))},
                                 {"nfe_per_step", stat_json(mean_std(nfe))},
                                 {"reward_evals_per_step", stat_json(mean_std(revals))},
                                 {"preset", methods().get(var.method).preset}};
      for (const auto& [term, values] : term_final)
        report["methods"][name]["reward_terms_final"][term] = stat_json(mean_std(values));
      const std::string reached_text = stat_text(reached, 0) + " (" + std::to_string(reached.n) +
                                       "/" + std::to_string(runs.size()) + ")";
      rows.push_back({name, stat_text(mean_std(final_r)), stat_text(mean_std(frac), 2),
                      stat_text(mean_std(kl), 2), stat_text(mean_std(dist)),
                      stat_text(mean_std(div), 2), reached_text, stat_text(mean_std(sec), 2),
                      stat_text(mean_std(ms), 2)});
      cost_rows.push_back({name, fixed(mean_std(nfe).mean, 1), fixed(mean_std(revals).mean, 1)});
      if (image_rows[0].size() > 1 && !runs.empty()) {
        std::vector<std::string> row = {name};
        for (const auto& term : terms) row.push_back(stat_text(mean_std(term_final[term])));
        if (judged)
          for (const auto& cell :
               {stat_text(mean_std(acc)), stat_text(mean_std(fid)), stat_text(mean_std(div), 2)})
            row.push_back(cell);
        image_rows.push_back(row);
      }
    }
    // The judge on the task's test images: the level of its rate and diversity in the data.
    if (const auto data = r.evaluator.judge_data(); judged && data) {
      std::vector<std::string> row(1 + terms.size(), "");
      row[0] = "test data";
      for (const auto& cell :
           {fixed(data->accuracy), fixed(data->frechet_distance), fixed(data->diversity, 2)})
        row.push_back(cell);
      image_rows.push_back(row);
      report["test_data"] = {{rate_name, data->accuracy},
                             {"frechet_distance", data->frechet_distance},
                             {"diversity", data->diversity}};
    }
    for (const auto& c : curves)
      report["runs"].push_back(curve_json(c, plan.variant(c.variant).sweep));
  }

  void frontier() {
    // --- the exact reward-KL frontier: p_ref exp(m' r) over a grid of m' around m and the swept
    // ones
    double m_hi = std::max(m, 1e-3);
    for (const auto& v : plan.variants) m_hi = std::max(m_hi, v.cfg.number("multiplier"));
    std::vector<double> grid = {0.0};
    for (double f = 1.0 / 64.0; f <= 4.0 * m_hi + 1e-9; f *= std::sqrt(2.0)) grid.push_back(f);
    report["frontier"] = nlohmann::json::array();
    for (const auto& p :
         exact ? r.evaluator.target().frontier(grid) : std::vector<FrontierPoint>{}) {
      report["frontier"].push_back(
          {{"multiplier", p.multiplier}, {"reward", p.reward}, {"kl", p.kl}, {"ess", p.ess}});
      if (p.ess < 50) continue;  // too few effective pool samples to trust the point
      front_kl.push_back(p.kl);
      front_reward.push_back(p.reward);
    }
  }

  void plots(const RunDir& run) {
    // --- plots
    // ------------------------------------------------------------------------------------- Curves
    // are means over seeds, with a band of ± one std where there are several seeds.
    std::vector<Series> vs_steps, vs_seconds, vs_base, dist_steps, frontier, judge_steps,
        frechet_steps, vs_frechet;
    for (size_t i = 0; i < plan.variants.size(); ++i) {
      const auto& runs = by_variant[plan.variants[i].label];
      if (runs.empty()) continue;
      const std::string style = series_style(i);
      const auto rw = mean_of(runs, &RunCurve::reward);
      const auto [r_lo, r_hi] = band_of(runs, &RunCurve::reward);
      const auto [d_lo, d_hi] = band_of(runs, &RunCurve::distance);
      const auto& label = plan.variants[i].label;
      vs_steps.push_back({label, mean_of(runs, &RunCurve::step), rw, style, r_lo, r_hi});
      vs_seconds.push_back({label, mean_of(runs, &RunCurve::seconds), rw, style, r_lo, r_hi});
      vs_base.push_back({label, mean_of(runs, &RunCurve::distance_base), rw, style});
      dist_steps.push_back({label, mean_of(runs, &RunCurve::step),
                            mean_of(runs, &RunCurve::distance), style, d_lo, d_hi});
      if (judged) {
        const auto [j_lo, j_hi] = band_of(runs, &RunCurve::judge_rate);
        const auto [f_lo, f_hi] = band_of(runs, &RunCurve::frechet);
        judge_steps.push_back({label, mean_of(runs, &RunCurve::step),
                               mean_of(runs, &RunCurve::judge_rate), style, j_lo, j_hi});
        frechet_steps.push_back({label, mean_of(runs, &RunCurve::step),
                                 mean_of(runs, &RunCurve::frechet), style, f_lo, f_hi});
        // The path of each configuration through (Fréchet distance, reward), one point per
        // evaluation: a method that buys reward by leaving the data's distribution moves right.
        vs_frechet.push_back(
            {label, mean_of(runs, &RunCurve::frechet), rw, series_style(i, /*marker=*/true)});
      }
    }
    // One curve per method through its plan.variants' (KL, reward) means, sorted by KL. A negative
    // KL cannot be: the likelihood ODE failed on a velocity far from the base; such points are left
    // out and listed.
    for (size_t i = 0; i < plan.methods.size(); ++i) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& v : plan.variants) {
        if (v.method != plan.methods[i] || final_point[v.label].first.n == 0) continue;
        if (final_point[v.label].first.mean < 0) {
          kl_failed.push_back(v.label);
          continue;
        }
        pts.emplace_back(final_point[v.label].first.mean, final_point[v.label].second.mean);
      }
      if (pts.empty()) continue;
      std::sort(pts.begin(), pts.end());
      Series sr{plan.methods[i], {}, {}, series_style(i, /*marker=*/true)};
      for (const auto& [x, y] : pts) {
        sr.x.push_back(x);
        sr.y.push_back(y);
      }
      frontier.push_back(sr);
    }
    if (exact)
      frontier.push_back(
          {"exact tilt p_ref exp(m r)", front_kl, front_reward, "k3"});  // the frontier
    std::vector<HLine> levels = {{target_reward, "target reward", kTargetStyle},
                                 {before.reward_mean, "base model", kBaseStyle}};
    if (exact)
      levels.insert(levels.begin(), {reward_optimal, "exact target (optimal)", kOptimumStyle});
    const std::string spread = seeds > 1 ? " (mean and ± std over seeds)" : "";
    line_plot(run.plot("reward_vs_steps"), "evaluation reward" + spread, "training step",
              "mean reward", vs_steps, levels);
    line_plot(run.plot("reward_vs_seconds"), "evaluation reward" + spread, "training seconds",
              "mean reward", vs_seconds, levels);
    line_plot(run.plot("reward_vs_distance_from_base"),
              "reward against energy distance from the base model",
              "energy distance from the base samples", "mean reward", vs_base, levels);
    if (exact)
      line_plot(run.plot("distance_vs_steps"), "energy distance to the exact target" + spread,
                "training step", "energy distance to p*", dist_steps,
                {{0.0, "exact target", kOptimumStyle}});
    if (judged) {
      line_plot(run.plot("judge_vs_steps"),
                std::string("the evaluation judge's ") + rate_label() + spread, "training step",
                rate_label(), judge_steps);
      line_plot(run.plot("frechet_vs_steps"),
                "Frechet distance to the test split in the judge's features" + spread,
                "training step", "Frechet distance", frechet_steps);
      line_plot(run.plot("reward_vs_frechet"),
                "reward against Frechet distance (one point per evaluation)",
                "Frechet distance to the test split", "mean reward", vs_frechet,
                {{before.reward_mean, "base model", kBaseStyle}});
    }
    line_plot(run.plot("frontier"),
              "final reward against KL(p_{\\theta} || p_{ref}) (mean over seeds)",
              "KL to the base model (nats)", "final mean reward", frontier,
              {{before.reward_mean, "base model", kBaseStyle}});
  }

  void markdown(const RunDir& run) {
    // --- report.md, report.json, summary.json
    // ------------------------------------------------------
    std::ostringstream md;
    md << "# ramflow compare: " << task.name() << ", reward " << reward.spec().dump() << "\n\n";
    // One line of settings when every configuration runs with the same, else one per configuration.
    std::vector<std::string> settings;
    for (const auto& v : plan.variants) settings.push_back(settings_text(v));
    if (std::all_of(settings.begin(), settings.end(),
                    [&](const std::string& s) { return s == settings.front(); })) {
      md << "Every run: " << settings.front() << ". ";
    } else {
      md << "Settings per configuration (the task's presets, then the flags):\n\n";
      for (size_t i = 0; i < settings.size(); ++i)
        md << "- " << plan.variants[i].label << ": " << settings[i] << "\n";
      md << "\n";
    }
    md << seeds << " seeds per configuration, mean ± std over seeds. "
       << "Evaluation: " << n_eval << " samples on fixed noise";
    if (exact) {
      const ExactTarget& target = r.evaluator.target();
      md << "; the exact target p* ∝ p_base exp(m r) from " << target.pool.size(0)
         << " base samples (effective sample size " << fixed(target.ess, 0) << ").\n\n"
         << "- base reward " << fixed(before.reward_mean) << ", reward_optimal "
         << fixed(reward_optimal) << " (KL(p* || p_ref) = " << fixed(kl_optimal)
         << "), target reward " << fixed(target_reward) << " ("
         << report["target_source"].get<std::string>() << ")\n"
         << "- of optimal = (reward - base) / (reward_optimal - base); above 1 means the method "
            "went "
            "past the "
            "KL-optimal tilt at m = "
         << m << "\n";
    } else {
      md << " (--eval reward: no exact target, so no distances, fractions of the optimum or "
            "frontier).\n\n"
         << "- base reward " << fixed(before.reward_mean) << ", target reward "
         << fixed(target_reward) << " (" << report["target_source"].get<std::string>() << ")\n";
    }
    md << "- KL to base = KL(p_theta || p_ref) at the end, by ODE likelihoods on "
       << cfg.integer("eval_kl_samples") << " samples; m means a KL temperature only for "
       << join(methods_reading("multiplier", cfg.table()))
       << ": the other methods have their own regularisers, so compare them on the frontier "
          "(plots/frontier.png); a run's estimate that says nothing (negative, or a standard "
          "error above the value) is left out of the mean\n"
       << "- diversity = mean pairwise distance of the samples";
    if (exact) md << " (exact target: " << fixed(target_diversity) << ")";
    md << "\n";
    if (exact)
      md << "- distance to p* = the energy distance's unbiased estimate, 2 E|x - y| - E|x - x'| - "
            "E|y - y'|: zero for the target's own law, and slightly negative (within its noise) "
            "for a model as close as the evaluation can tell\n";
    md << "\n";
    auto md_table = [&](const std::vector<std::vector<std::string>>& t) {
      for (size_t row = 0; row < t.size(); ++row) {
        md << "|";
        for (const auto& cell : t[row]) md << " " << cell << " |";
        md << "\n";
        if (row == 0) {
          md << "|";
          for (size_t k = 0; k < t[row].size(); ++k) md << "---|";
          md << "\n";
        }
      }
    };
    md_table(rows);
    md << "\nCost per step (network evaluations per endpoint, rollout plus training; reward "
          "evaluations):\n\n";
    md_table(cost_rows);
    if (image_rows.size() > 1) {
      md << "\nAt the final evaluation:";
      if (!terms.empty()) md << " the reward's named terms" << (judged ? ";" : "");
      if (judged)
        md << " the evaluation judge, which the reward never sees ("
           << (rate_name == "exact_match" ? "a text reader: exact match of the requested word"
                                          : "a classifier: accuracy of the requested class")
           << "), its Fréchet distance to the test split in its feature space, the "
              "within-condition diversity of its features";
      md << ":\n\n";
      md_table(image_rows);
    }
    // Steps to the target, each configuration against the target configuration.
    if (!plan.fixed_target && !plan.fraction_target && to_target.count(plan.target_variant) &&
        to_target[plan.target_variant].first.n > 0) {
      const MeanStd& ts = to_target[plan.target_variant].first;
      md << "\n## Steps to " << plan.target_variant << "'s peak reward (" << fixed(target_reward)
         << ")\n\n"
         << plan.target_variant << " reaches its own peak at step " << stat_text(ts, 0)
         << " on average (" << fixed(to_target[plan.target_variant].second.mean, 2)
         << " s). The paper reports RAM reaching Flow-GRPO's "
            "peak in up to 50x fewer steps.\n\n";
      for (const auto& v : plan.variants) {
        if (v.label == plan.target_variant) continue;
        const MeanStd& st = to_target[v.label].first;
        const size_t runs = by_variant[v.label].size();
        md << "- " << v.label << ": ";
        if (st.n == 0) {
          md << "never reaches it in " << v.cfg.integer("steps") << " steps\n";
          continue;
        }
        md << "step " << stat_text(st, 0) << " (" << st.n << "/" << runs << " seeds), "
           << fixed(to_target[v.label].second.mean, 2) << " s: ";
        // A ratio only where both reach it after training began (the base model may already).
        if (st.mean > 0 && ts.mean > 0)
          md << fixed(ts.mean / st.mean, 1) << "x fewer steps"
             << (ts.mean / st.mean >= 50 ? " (the paper's 50x holds here)" : "");
        else
          md << "no ratio (the target is reached at step 0)";
        md << (st.n < static_cast<int64_t>(runs) ? "; the other seeds never reach it" : "") << "\n";
      }
    }
    if (!kl_failed.empty()) {
      md << "\nLeft out of plots/frontier.png: a negative KL estimate (the likelihood ODE failed "
            "on "
            "a velocity far "
            "from the base) for";
      for (const auto& label : kl_failed)
        md << " " << label << (&label == &kl_failed.back() ? "." : ",");
      md << "\n";
    }
    md << "\nPlots: plots/reward_vs_steps.png, plots/reward_vs_seconds.png, "
          "plots/reward_vs_distance_from_base.png, "
       << (exact ? "plots/distance_vs_steps.png, " : "")
       << (judged ? "plots/judge_vs_steps.png, plots/frechet_vs_steps.png, "
                    "plots/reward_vs_frechet.png, "
                  : "")
       << "plots/frontier.png\n";
    write_file_atomic(run.file("report.md"), md.str());
    write_file_atomic(run.file("report.json"), report.dump(2) + "\n");
  }

  // The longest run's steps (configurations may run for different lengths: settings_text).
  int64_t max_steps() const {
    int64_t n = 0;
    for (const auto& v : plan.variants) n = std::max(n, v.cfg.integer("steps"));
    return n;
  }

  nlohmann::json summary() const {
    nlohmann::json summary = {
        {"task", task.name()},
        {"methods", plan.methods},
        {"configurations", plan.variants.size()},
        {"seeds", seeds},
        {"steps", max_steps()},
        {"reward_base", before.reward_mean},
        {"reward_optimal", json_number(reward_optimal)},
        {"kl_optimal", json_number(kl_optimal)},
        {"target_reward", target_reward},
        {"failed_runs", std::count_if(curves.begin(), curves.end(),
                                      [](const RunCurve& c) { return !c.error.empty(); })},
        {"report", "report.md"}};
    return summary;
  }
};

}  // namespace

nlohmann::json write_report(const CompareResults& r, RunDir& run, JobIO io) {
  Report report(r);
  report.aggregate(io);
  report.frontier();
  report.plots(run);
  report.markdown(run);
  io.results_block() << table(report.rows);
  if (report.image_rows.size() > 1) io.results() << "\n" << table(report.image_rows);
  return report.summary();
}

}  // namespace ramflow::jobs
