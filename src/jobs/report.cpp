// Report helpers of the jobs (see src/jobs/report.h).
#include "jobs/report.h"

#include <cmath>
#include <functional>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/image.h"
#include "ramflow/labelled_grid.h"

namespace ramflow::jobs {

SamplePanel panel(const std::string& title, const torch::Tensor& samples) {
  auto x =
      samples.detach().to(torch::kCPU, torch::kFloat).reshape({samples.size(0), -1}).contiguous();
  SamplePanel p;
  p.title = title;
  p.dim = x.size(1);
  p.points.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  return p;
}

SamplePanel panel(const std::string& title, const torch::Tensor& samples,
                  const nlohmann::json& reward_spec) {
  SamplePanel p = panel(title, samples);
  std::function<void(const nlohmann::json&)> collect = [&](const nlohmann::json& spec) {
    if (!spec.is_object()) return;
    if (spec.contains("center") && spec["center"].is_array() && spec["center"].size() >= 2)
      p.marks.emplace_back(spec["center"][0].get<double>(), spec["center"][1].get<double>());
    if (spec.contains("terms") && spec["terms"].is_array())
      for (const auto& term : spec["terms"]) collect(term);
  };
  collect(reward_spec);
  if (!p.marks.empty()) p.marks_label = "reward centre";
  return p;
}

void class_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                 const std::vector<std::string>& headings, const std::vector<Condition>& conds,
                 const Task& task, int64_t per_class) {
  TORCH_CHECK(conds.size() == 1 || conds.size() == batches.size(), "class_grids: ", conds.size(),
              " label tensors for ", batches.size(), " batches");
  // One row per class of a class-conditional task; else one per condition that occurs (prompts), in
  // id order, at most kMaxPrompts; a single row for an unconditional task.
  constexpr int64_t kMaxPrompts = 10;
  const Condition& first = conds.front();
  torch::Tensor ids;  // [K] the ids of the rows
  if (task.num_classes() > 0)
    ids = torch::arange(task.num_classes(), torch::kLong);
  else if (first.defined())
    ids = std::get<0>(torch::_unique(first.id().cpu(), /*sorted=*/true));
  int64_t K = !ids.defined()           ? 1
              : task.num_classes() > 0 ? ids.numel()
                                       : std::min<int64_t>(kMaxPrompts, ids.numel());
  if (task.num_classes() == 0 && first.defined()) {
    // Prompts asked for fewer than per_class times each (the words task's evaluation asks each
    // word 4 times): as many columns as the most-asked prompt has samples, and the rows that
    // leaves room for (kMaxPrompts x per_class images in all).
    const auto counts = std::get<2>(torch::_unique2(first.id().cpu(), true, false, true));
    const int64_t most = counts.max().item<int64_t>();
    if (most < per_class) {
      K = std::min<int64_t>(ids.numel(), kMaxPrompts * per_class / most);
      per_class = most;
    }
  }
  std::vector<torch::Tensor> picked;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto x = batches[b].detach().cpu();  // [N, C, H, W]
    const auto cond = conds[conds.size() == 1 ? 0 : b];
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = K * per_class;
    auto grid = torch::full(shape, -1.0, x.options());  // black where a condition is short
    for (int64_t k = 0; k < K; ++k) {
      // The first per_class samples of the k-th condition (all samples for an unconditional task).
      auto ik = cond.defined() ? (cond.id().cpu() == ids[k]).nonzero().flatten()
                               : torch::arange(x.size(0));
      const int64_t have = std::min(per_class, ik.size(0));
      if (have > 0)
        grid.narrow(0, k * per_class, have).copy_(x.index_select(0, ik.narrow(0, 0, have)));
    }
    picked.push_back(grid);
  }
  // Each row's label: the text its condition carries (a prompt asked for by --prompts), else the
  // task's name for the id (a class).
  std::vector<std::string> labels;
  if (ids.defined())
    for (int64_t k = 0; k < K; ++k) {
      const int64_t id = ids[k].item<int64_t>();
      std::string text;
      if (first.defined())
        if (const auto at = (first.id().cpu() == id).nonzero().flatten(); at.numel() > 0)
          text = first.text(at[0].item<int64_t>());
      labels.push_back(text.empty() ? task.condition_text(id) : text);
    }
  save_labelled_grids(path, picked, headings, labels, K, per_class);
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

namespace {
// Characters on the screen of UTF-8 text ("±" is two bytes, one character): the bytes that do not
// continue a character (10xxxxxx).
size_t display_width(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], display_width(r[i]));
    }
  std::ostringstream s;
  for (size_t k = 0; k < rows.size(); ++k) {
    std::string line;
    for (size_t i = 0; i < rows[k].size(); ++i) {
      line += rows[k][i];
      // Two spaces between columns; none after the last cell with text.
      if (i + 1 < rows[k].size())
        line += std::string(width[i] + 2 - display_width(rows[k][i]), ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    s << line << "\n";
    if (k == 0) {
      size_t total = 0;
      for (auto w : width) total += w + 2;
      s << std::string(total, '-') << "\n";
    }
  }
  return s.str();
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

nlohmann::json json_number(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

nlohmann::json step_line(const StepRecord& rec) {
  // Network evaluations per endpoint so far: nfe by the rollouts, nfe_train by the losses,
  // nfe_total both.
  nlohmann::json line = {{"step", rec.step},
                         {"seconds", rec.seconds},
                         {"reward_mean", rec.reward_mean},
                         {"reward_std", rec.reward_std},
                         {"reward_min", rec.reward_min},
                         {"reward_max", rec.reward_max},
                         {"loss", rec.loss},
                         {"grad_norm", rec.grad_norm},
                         {"nfe", rec.nfe},
                         {"nfe_train", rec.nfe_train},
                         {"nfe_total", static_cast<double>(rec.nfe) + rec.nfe_train},
                         {"reward_evals", rec.reward_evals}};
  if (!rec.skipped.empty()) line["skipped"] = rec.skipped;
  if (rec.comm_seconds > 0) line["comm_seconds"] = rec.comm_seconds;  // several processes
  for (const auto& kv : rec.metrics)
    if (kv.first != "nfe_train")
      line[kv.first] = kv.second;  // the step's share is in the running total
  return line;
}

nlohmann::json eval_line(int64_t step, const StepRecord& totals, const EvalResult& e,
                         double distance_from_base, bool final) {
  nlohmann::json line = {{"eval_step", step},
                         {"samples", e.n},
                         {"seconds", totals.seconds},
                         {"nfe", totals.nfe},
                         {"nfe_train", totals.nfe_train},
                         {"nfe_total", static_cast<double>(totals.nfe) + totals.nfe_train},
                         {"reward_evals", totals.reward_evals},
                         {"reward", json_number(e.reward_mean)},
                         {"reward_std", json_number(e.reward_std)},
                         {"distance", json_number(e.distance)},
                         {"distance_from_base", json_number(distance_from_base)},
                         {"diversity", json_number(e.diversity)}};
  if (!e.reward_terms.empty()) line["reward_terms"] = e.reward_terms;
  if (e.image) {
    line["judge"] = e.image->rate_name;  // the name of the judge's rate, the key that follows
    line[e.image->rate_name] = json_number(e.image->accuracy);
    line["frechet_distance"] = json_number(e.image->frechet_distance);
  }
  if (final) {
    line["final"] = true;
    line["kl_to_base"] = json_number(e.kl_to_base);
    line["kl_to_base_se"] = json_number(e.kl_to_base_se);
  }
  return line;
}

}  // namespace ramflow::jobs
