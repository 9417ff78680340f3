// MLPVelocity (see include/ramflow/mlp_velocity.h). Ref for the architecture: the RAM 2-D
// tutorial's VelocityNet (Linear(18->128)-SiLU-...-Linear(128->2)).
#include "ramflow/mlp_velocity.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "core/cpu_kernels.h"
#include "ramflow/config.h"

namespace ramflow {

nlohmann::json MLPVelocityOptions::to_json() const {
  return {{"type", "mlp"},
          {"dim", dim_},
          {"hidden", hidden_},
          {"depth", depth_},
          {"frequencies", frequencies_},
          {"num_classes", num_classes_},
          {"class_dim", class_dim_}};
}

MLPVelocityOptions MLPVelocityOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'mlp'");
  r.text("type", "mlp");
  auto positive = [&](const std::string& key, double def, double min) {
    double v = r.number(key, def);
    if (v < min || v != std::floor(v))
      throw ConfigError("model 'mlp': field '" + key +
                        "' must be an integer >= " + std::to_string(static_cast<int>(min)));
    return static_cast<int64_t>(v);
  };
  MLPVelocityOptions o(positive("dim", -1, 1));
  o.hidden(positive("hidden", 128, 1))
      .depth(positive("depth", 3, 1))
      .frequencies(positive("frequencies", 8, 0))
      .num_classes(positive("num_classes", 0, 0))
      .class_dim(positive("class_dim", 16, 1));
  r.finish();
  return o;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const float* contiguous_data(const torch::Tensor& t, torch::Tensor& keep) {
  keep = t.is_contiguous() ? t : t.contiguous();
  return keep.data_ptr<float>();
}

// Runs the layer stack on h_0 [B, in_0] (CPU, float32) with the dense kernels:
//   z_l = h_l Wt_l + b_l,  h_{l+1} = silu(z_l),  v = z_{L-1}   (L = number of layers).
// With `saved` (then h0 must be given as a tensor too), appends h_0..h_{L-1} and then z_0..z_{L-2}
// (separate tensors) for the backward pass. Without, the hidden activations ping-pong between two
// halves of a per-thread scratch buffer and the SiLU runs in place: one allocation (the output) per
// call.
torch::Tensor run_stack(const float* h, int64_t B, const torch::Tensor& h0_tensor,
                        torch::TensorList wt, torch::TensorList bias,
                        std::vector<torch::Tensor>* saved) {
  const int64_t L = static_cast<int64_t>(wt.size());
  const auto options = wt[0].options().requires_grad(false);
  int64_t width = 0;  // the widest hidden layer
  for (int64_t l = 0; l + 1 < L; ++l) width = std::max(width, wt[l].size(1));
  thread_local std::vector<float> scratch;
  if (!saved && scratch.size() < static_cast<size_t>(2 * B * width)) scratch.resize(2 * B * width);
  std::vector<torch::Tensor> zs;
  torch::Tensor h_tensor = h0_tensor, keep_w, keep_b;
  for (int64_t l = 0;; ++l) {
    const int64_t I = wt[l].size(0), O = wt[l].size(1);
    const float* w = contiguous_data(wt[l], keep_w);
    const float* b = contiguous_data(bias[l], keep_b);
    const bool last = l + 1 == L;
    torch::Tensor z;
    float* z_ptr;
    if (last || saved) {
      z = torch::empty({B, O}, options);  // [B, out_l]
      z_ptr = z.data_ptr<float>();
    } else {
      z_ptr = scratch.data() + (l % 2) * B * width;
    }
    kernels::dense(h, B, I, w, b, O, z_ptr);
    if (saved) saved->push_back(h_tensor);
    if (last) {
      if (saved) saved->insert(saved->end(), zs.begin(), zs.end());
      return z;
    }
    if (saved) {
      h_tensor = torch::empty_like(z);
      kernels::silu(z_ptr, h_tensor.data_ptr<float>(), B * O);
      zs.push_back(z);
      h = h_tensor.data_ptr<float>();
    } else {
      kernels::silu(z_ptr, z_ptr, B * O);
      h = z_ptr;
    }
  }
}

// Width of h_0: D + 2F (+ E for a conditional model).
int64_t input_width(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& emb,
                    const torch::Tensor& freqs) {
  return x.size(1) + 2 * freqs.size(0) + (labels.numel() > 0 ? emb.size(1) : 0);
}

// h_0 = [x, sin(t freqs), cos(t freqs), emb[label]] written row by row into hp [B, input_width]:
// x [B, D], t [B], labels [B] (int64) and emb [C, E] (both empty for an unconditional model), freqs
// [F]; all CPU float32 except labels. The fused inference and training paths share it, so both
// compute bit-identical velocities (a zero reward then gives an exactly zero RAM loss).
void fill_h0(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
             const torch::Tensor& emb, const torch::Tensor& freqs, float* hp) {
  const int64_t B = x.size(0), D = x.size(1), F = freqs.size(0);
  const int64_t in = input_width(x, labels, emb, freqs), E = in - D - 2 * F;
  torch::Tensor keep_x, keep_t, keep_f;
  const float* xp = contiguous_data(x, keep_x);
  const float* tp = contiguous_data(t, keep_t);
  const float* fp = contiguous_data(freqs, keep_f);
  std::vector<float> phase_features(2 * F);
  for (int64_t b = 0; b < B; ++b) {
    if (b == 0 || tp[b] != tp[b - 1]) {  // a sampler step shares t across the batch: compute once
      for (int64_t k = 0; k < F; ++k) {
        const float phase = tp[b] * fp[k];
        phase_features[k] = std::sin(phase);
        phase_features[F + k] = std::cos(phase);
      }
    }
    std::copy(xp + b * D, xp + (b + 1) * D, hp + b * in);
    std::copy(phase_features.begin(), phase_features.end(), hp + b * in + D);
  }
  if (E > 0) {
    torch::Tensor keep_e;
    const float* ep = contiguous_data(emb, keep_e);
    const int64_t* lp = labels.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK(lp[b] >= 0 && lp[b] < emb.size(0), "MLPVelocity: class label ", lp[b],
                  " out of range [0, ", emb.size(0), ")");
      std::copy(ep + lp[b] * E, ep + (lp[b] + 1) * E, hp + b * in + D + 2 * F);
    }
  }
}

// The whole network as one autograd node. Inputs: x [B, D], t [B], labels [B] (or empty), the class
// embedding table [C, E] (or empty), freqs [F], Wt_0..Wt_{L-1}, b_0..b_{L-1}. Gradients flow to x,
// the embedding table and every Wt_l and b_l (not to t). Backward, with g = dLoss/dz_l from the
// output down:
//   dWt_l = h_l^T g,   db_l = sum over rows of g,   dh_l = g Wt_l^T,   dz_{l-1} = dh_l *
//   silu'(z_{l-1}),
// and finally dx = dh_0[:, :D], d emb[c] = sum of dh_0[b, D + 2F:] over the rows b with label c.
struct FusedMLP : public torch::autograd::Function<FusedMLP> {
  static constexpr int64_t kFixedInputs = 5;  // x, t, labels, embedding, freqs

  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& t,
                               const torch::Tensor& labels, const torch::Tensor& emb,
                               const torch::Tensor& freqs, torch::TensorList wt,
                               torch::TensorList bias) {
    std::vector<torch::Tensor> saved;  // h_0..h_{L-1}, z_0..z_{L-2}, Wt_0..Wt_{L-1}, labels
    auto h0 = torch::empty({x.size(0), input_width(x, labels, emb, freqs)},
                           x.options().requires_grad(false));
    fill_h0(x, t, labels, emb, freqs, h0.data_ptr<float>());
    auto v = run_stack(h0.data_ptr<float>(), x.size(0), h0, wt, bias, &saved);
    saved.insert(saved.end(), wt.begin(), wt.end());
    saved.push_back(labels);
    ctx->save_for_backward(saved);
    ctx->saved_data["layers"] = static_cast<int64_t>(wt.size());
    ctx->saved_data["dim"] = x.size(1);
    ctx->saved_data["classes"] = labels.numel() > 0 ? emb.size(0) : int64_t{0};
    ctx->saved_data["emb_dim"] = labels.numel() > 0 ? emb.size(1) : int64_t{0};
    return {v};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "MLPVelocity: the fused backward is first-order only; call set_fused(false) for "
                "higher-order gradients");
    const auto saved = ctx->get_saved_variables();
    const int64_t L = ctx->saved_data["layers"].toInt(), D = ctx->saved_data["dim"].toInt();
    const int64_t C = ctx->saved_data["classes"].toInt();
    auto h = [&](int64_t l) { return saved[l]; };
    auto z = [&](int64_t l) { return saved[L + l]; };
    auto w = [&](int64_t l) { return saved[2 * L - 1 + l]; };
    const auto& labels = saved[3 * L - 1];
    auto ptr = [](const torch::Tensor& t) { return t.data_ptr<float>(); };
    const int64_t W0 = kFixedInputs, B0 = kFixedInputs + L;  // input index of Wt_0 and b_0
    variable_list grads(kFixedInputs + 2 * L);
    const bool need_h0 = ctx->needs_input_grad(0) || (C > 0 && ctx->needs_input_grad(3));
    auto g = grad_out[0].contiguous();  // dLoss/dv: [B, D]
    const int64_t B = g.size(0);
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t I = w(l).size(0), O = w(l).size(1);
      if (ctx->needs_input_grad(W0 + l)) {  // dWt_l = h_l^T g: [in, out]
        grads[W0 + l] = torch::empty({I, O}, g.options());
        kernels::dense_tn(ptr(h(l)), B, I, ptr(g), O, ptr(grads[W0 + l]));
      }
      if (ctx->needs_input_grad(B0 + l)) {  // db_l: [out]
        grads[B0 + l] = torch::empty({O}, g.options());
        kernels::column_sum(ptr(g), B, O, ptr(grads[B0 + l]));
      }
      if (l == 0 && !need_h0) break;
      auto w_t = torch::empty({O, I}, g.options());  // Wt_l^T = W_l: [out, in]
      kernels::transpose(ptr(w(l)), I, O, ptr(w_t));
      auto gh = torch::empty({B, I}, g.options());  // dh_l = g Wt_l^T: [B, in]
      kernels::dense(ptr(g), B, O, ptr(w_t), nullptr, I, ptr(gh));
      if (l == 0) {
        if (ctx->needs_input_grad(0)) grads[0] = gh.narrow(1, 0, D).contiguous();  // dx: [B, D]
        if (C > 0 && ctx->needs_input_grad(3)) {                                   // d emb: [C, E]
          const int64_t E = ctx->saved_data["emb_dim"].toInt();
          auto g_emb = torch::zeros({C, E}, g.options());
          const int64_t* lp = labels.data_ptr<int64_t>();
          const float* gp = ptr(gh);
          float* ge = ptr(g_emb);
          for (int64_t b = 0; b < B; ++b)
            for (int64_t e = 0; e < E; ++e) ge[lp[b] * E + e] += gp[b * I + (I - E) + e];
          grads[3] = g_emb;
        }
      } else {
        g = torch::empty_like(gh);  // dz_{l-1} = dh_l * silu'(z_{l-1})
        kernels::silu_backward(ptr(gh), ptr(z(l - 1)), ptr(g), gh.numel());
      }
    }
    return grads;
  }
};

}  // namespace

MLPVelocityImpl::MLPVelocityImpl(const MLPVelocityOptions& options) : options_(options) {
  TORCH_CHECK(options.dim() >= 1 && options.hidden() >= 1 && options.depth() >= 1,
              "MLPVelocity: dim, hidden and depth must be >= 1");
  auto k = torch::arange(options.frequencies(), torch::kFloat);
  freqs_ = register_buffer("freqs", torch::pow(2.0, k) * M_PI);
  int64_t in = options.dim() + 2 * options.frequencies();
  if (options.num_classes() > 0) {
    class_embedding_ = register_module(
        "class_embedding", torch::nn::Embedding(options.num_classes(), options.class_dim()));
    in += options.class_dim();
  }
  for (int64_t l = 0; l <= options.depth(); ++l) {
    const int64_t out = l == options.depth() ? options.dim() : options.hidden();
    const std::string name = "layer" + std::to_string(l);  // no dots: names are flat
    wt_.push_back(register_parameter(name + "_weight_t", torch::empty({in, out})));
    bias_.push_back(register_parameter(name + "_bias", torch::empty({out})));
    in = out;
  }
  Rng rng(0);
  reset_parameters(rng);
}

void MLPVelocityImpl::reset_parameters(Rng& rng) {
  torch::NoGradGuard no_grad;
  // Draws on the CPU in a fixed order (layers, then the embedding), then copies to the parameters'
  // device: the weights depend on the seed only.
  for (size_t l = 0; l < wt_.size(); ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(wt_[l].size(0)));  // PyTorch's Linear
    wt_[l].copy_((rng.rand(wt_[l].sizes()) * 2.0 - 1.0) * bound);
    bias_[l].copy_((rng.rand(bias_[l].sizes()) * 2.0 - 1.0) * bound);
  }
  if (class_embedding_) class_embedding_->weight.copy_(rng.randn(class_embedding_->weight.sizes()));
}

// h_0 = [x, sin(t freqs), cos(t freqs), embedding(cond)] with LibTorch operators (differentiable).
torch::Tensor MLPVelocityImpl::features(const torch::Tensor& x, const torch::Tensor& t,
                                        const Condition& cond) {
  const int64_t B = x.size(0);
  auto h = x.reshape({B, options_.dim()});             // [B, D]
  auto phase = t.to(x.dtype()).unsqueeze(1) * freqs_;  // [B, F]
  std::vector<torch::Tensor> parts = {h, torch::sin(phase), torch::cos(phase)};
  if (options_.num_classes() > 0)
    parts.push_back(class_embedding_->forward(labels_of(cond, B, "MLPVelocity")));  // [B, E]
  return torch::cat(parts, /*dim=*/1);  // [B, D + 2F (+ E)]
}

torch::Tensor MLPVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                       const Condition& cond) {
  const int64_t B = x.size(0);
  TORCH_CHECK(x.numel() == B * options_.dim(), "MLPVelocity: x has shape ", x.sizes(),
              ", expected [B, ...] with ", options_.dim(), " values per sample");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "MLPVelocity: t has shape ", t.sizes(),
              ", expected [", B, "]");
  const bool conditional = options_.num_classes() > 0;
  const auto labels =
      conditional ? labels_of(cond, B, "MLPVelocity").contiguous() : torch::Tensor();  // [B]
  const bool fused = fused_ && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
                     t.scalar_type() == torch::kFloat && !t.requires_grad() &&
                     wt_[0].device().is_cpu() && wt_[0].scalar_type() == torch::kFloat;
  torch::Tensor v;  // [B, D]
  if (fused) {
    const auto x2d = x.dim() == 2 ? x : x.reshape({B, options_.dim()});
    const auto emb = conditional ? class_embedding_->weight : torch::Tensor();
    if (!torch::GradMode::is_enabled()) {
      thread_local std::vector<float> h0;  // [B, in_0], reused from call to call
      h0.resize(B * input_width(x2d, labels, emb, freqs_));
      fill_h0(x2d, t, labels, emb, freqs_, h0.data());
      v = run_stack(h0.data(), B, torch::Tensor(), wt_, bias_, nullptr);
    } else {
      // TensorList (not std::vector) so that autograd sees the weights as inputs of the node.
      static const torch::Tensor none_long = torch::empty({0}, torch::kLong);
      static const torch::Tensor none_float = torch::empty({0});
      v = FusedMLP::apply(x2d, t, conditional ? labels : none_long, conditional ? emb : none_float,
                          freqs_, torch::TensorList(wt_), torch::TensorList(bias_))[0];
    }
  } else {
    auto h = features(x, t, cond);
    for (size_t l = 0; l < wt_.size(); ++l) {
      h = torch::addmm(bias_[l], h, wt_[l]);
      if (l + 1 < wt_.size()) h = torch::silu(h);
    }
    v = h;
  }
  return v.dim() == x.dim() ? v : v.reshape(x.sizes());  // [B, ...]
}

nlohmann::json MLPVelocityImpl::spec() const { return options_.to_json(); }

}  // namespace ramflow
