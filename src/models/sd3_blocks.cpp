// The parts of SD3's MM-DiT (see sd3_blocks.h).
#include "sd3_blocks.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include "core/cpu_kernels.h"
#include "ramflow/attention.h"
#include "ramflow/gelu_tanh.h"
#include "ramflow/lora_branch.h"

namespace ramflow::sd3 {

namespace {
constexpr double kEps = 1e-6;  // every norm of the MM-DiT

/// The norm of a holder that may be empty (no qk-norm), or null.
RMSNormImpl* maybe(RMSNorm& norm) { return norm.is_empty() ? nullptr : norm.get(); }

/// x + gate a with gate [B, D] broadcast over the tokens of a [B, n, D] (a gated residual).
torch::Tensor gated(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& a) {
  return torch::addcmul(x, gate.unsqueeze(1), a);
}
}  // namespace

RMSNormImpl::RMSNormImpl(int64_t n) { weight = register_parameter("weight", torch::ones({n})); }

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // The mean square in float32 whatever x's dtype; x / rms promotes to float32, then to w's dtype.
  const auto variance = x.to(torch::kFloat32).pow(2).mean(-1, /*keepdim=*/true);
  return (x * torch::rsqrt(variance + kEps)).to(weight.scalar_type()) * weight;
}

torch::Tensor norm_modulate(const torch::Tensor& x, const torch::Tensor& shift,
                            const torch::Tensor& scale) {
  const bool one_pass = !torch::GradMode::is_enabled() && x.device().is_cpu() && x.dim() == 3 &&
                        x.is_contiguous() && x.scalar_type() == torch::kFloat &&
                        shift.scalar_type() == torch::kFloat;  // (shift and scale: one dtype)
  if (!one_pass) {
    // a (1 + scale) + shift, scale and shift broadcast over the tokens: one addcmul pass.
    const auto a = torch::layer_norm(x, {x.size(-1)}, {}, {}, kEps);
    return torch::addcmul(shift.unsqueeze(1), a, 1 + scale.unsqueeze(1));
  }
  const int64_t B = x.size(0), n = x.size(1), D = x.size(2);
  TORCH_CHECK(shift.sizes() == torch::IntArrayRef({B, D}) && scale.sizes() == shift.sizes(),
              "norm_modulate: x ", x.sizes(), ", shift ", shift.sizes(), ", scale ", scale.sizes());
  auto out = torch::empty_like(x);
  const auto sh = shift.contiguous(), sc = scale.contiguous();
  const float *xp = x.data_ptr<float>(), *shp = sh.data_ptr<float>(), *scp = sc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end;) {  // the rows of one sample at a time (its scale and shift)
      const int64_t b = r / n, stop = std::min(end, (b + 1) * n);
      kernels::layer_norm_modulate(xp + r * D, stop - r, D, shp + b * D, scp + b * D,
                                   static_cast<float>(kEps), op + r * D);
      r = stop;
    }
  });
  return out;
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, bool joint, bool context_pre_only,
                             bool qk_norm)
    : heads_(heads) {
  const int64_t head_dim = dim / heads;
  to_q = register_module("to_q", torch::nn::Linear(dim, dim));
  to_k = register_module("to_k", torch::nn::Linear(dim, dim));
  to_v = register_module("to_v", torch::nn::Linear(dim, dim));
  to_out = register_module("to_out", torch::nn::ModuleList(torch::nn::Linear(dim, dim)));
  if (qk_norm) {
    norm_q = register_module("norm_q", RMSNorm(head_dim));
    norm_k = register_module("norm_k", RMSNorm(head_dim));
  }
  if (joint) {
    add_q_proj = register_module("add_q_proj", torch::nn::Linear(dim, dim));
    add_k_proj = register_module("add_k_proj", torch::nn::Linear(dim, dim));
    add_v_proj = register_module("add_v_proj", torch::nn::Linear(dim, dim));
    if (!context_pre_only) to_add_out = register_module("to_add_out", torch::nn::Linear(dim, dim));
    if (qk_norm) {
      norm_added_q = register_module("norm_added_q", RMSNorm(head_dim));
      norm_added_k = register_module("norm_added_k", RMSNorm(head_dim));
    }
  }
}

torch::Tensor AttentionImpl::heads(torch::nn::LinearImpl& proj, const torch::Tensor& x,
                                   RMSNormImpl* norm) {
  const int64_t B = x.size(0), n = x.size(1);
  auto h = layer_forward(proj, x).view({B, n, heads_, -1}).transpose(1, 2);  // [B, heads, n, d]
  return norm ? norm->forward(h) : h;
}

void AttentionImpl::write_heads(torch::nn::LinearImpl& proj, const torch::Tensor& x,
                                RMSNormImpl* norm, torch::Tensor& out, int64_t at) {
  const auto p = layer_forward(proj, x).contiguous();  // [B, n, D]
  TORCH_CHECK(p.scalar_type() == torch::kFloat && out.scalar_type() == torch::kFloat,
              "Attention: the fused path takes float32, got ", p.scalar_type());
  const int64_t n = p.size(1), T = out.size(2), d = out.size(3);
  const float* w = norm ? norm->weight.data_ptr<float>() : nullptr;
  const float* src = p.data_ptr<float>();
  float* dst = out.data_ptr<float>() + at * d;  // token `at` of head 0 of sample 0
  at::parallel_for(0, p.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      kernels::heads_rms_norm(src + b * n * heads_ * d, n, heads_, d, w, static_cast<float>(kEps),
                              dst + b * heads_ * T * d, T * d);
  });
}

bool AttentionImpl::fusable(const torch::Tensor& z) const {
  // Without gradients, float32 on the CPU (the model holds all its weights in one dtype and
  // device).
  return !torch::GradMode::is_enabled() && z.device().is_cpu() &&
         z.scalar_type() == torch::kFloat && to_q->weight.scalar_type() == torch::kFloat &&
         to_q->weight.device().is_cpu();
}

std::pair<torch::Tensor, torch::Tensor> AttentionImpl::forward(const torch::Tensor& z,
                                                               const torch::Tensor& e) {
  const int64_t B = z.size(0), N = z.size(1);
  torch::Tensor q, k, v;
  if (fusable(z)) {
    // The projections written, normalised, straight into the [B, heads, N + L, d] inputs of the
    // attention: the head split, the RMS norm and the concatenation in one pass each.
    const int64_t T = N + (e.defined() ? e.size(1) : 0), d = z.size(2) / heads_;
    q = torch::empty({B, heads_, T, d}, z.options());
    k = torch::empty_like(q), v = torch::empty_like(q);
    write_heads(*to_q, z, maybe(norm_q), q, 0);
    write_heads(*to_k, z, maybe(norm_k), k, 0);
    write_heads(*to_v, z, nullptr, v, 0);
    if (e.defined()) {
      write_heads(*add_q_proj, e, maybe(norm_added_q), q, N);
      write_heads(*add_k_proj, e, maybe(norm_added_k), k, N);
      write_heads(*add_v_proj, e, nullptr, v, N);
    }
  } else {
    q = heads(*to_q, z, maybe(norm_q)), k = heads(*to_k, z, maybe(norm_k));  // [B, heads, N, d]
    v = heads(*to_v, z, nullptr);
    if (e.defined()) {
      // Joint attention: the tokens [image, text] attend to each other with no mask.
      q = torch::cat({q, heads(*add_q_proj, e, maybe(norm_added_q))}, 2);  // [B, heads, N + L, d]
      k = torch::cat({k, heads(*add_k_proj, e, maybe(norm_added_k))}, 2);
      v = torch::cat({v, heads(*add_v_proj, e, nullptr)}, 2);
    }
  }
  const auto y = attention(q, k, v).to(q.scalar_type());  // [B, heads, N (+ L), d]
  // Each stream's tokens back to [B, n, D] rows, copied once straight from the heads layout, so
  // that its output projection reads contiguous rows (a slice of one [B, N + L, D] copy was copied
  // again inside the product).
  auto rows = [&](int64_t from, int64_t to) {
    return y.slice(2, from, to).transpose(1, 2).reshape({B, to - from, -1});  // [B, n, D]
  };
  auto out_z = layer_forward(*to_out[0]->as<torch::nn::LinearImpl>(), rows(0, N));
  torch::Tensor out_e;
  if (e.defined() && to_add_out) out_e = layer_forward(*to_add_out, rows(N, y.size(2)));
  return {out_z, out_e};  // [B, N, D], [B, L, D]
}

FeedForwardImpl::FeedForwardImpl(int64_t dim) {
  // net.0 is diffusers' GELU module (its Linear is net.0.proj), net.1 a dropout, net.2 the output.
  auto gelu = std::make_shared<torch::nn::Module>();
  proj_in = gelu->register_module("proj", torch::nn::Linear(dim, 4 * dim));
  proj_out = torch::nn::Linear(4 * dim, dim);
  register_module("net", torch::nn::ModuleList(gelu, torch::nn::Identity(), proj_out));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  auto h = gelu_tanh(layer_forward(*proj_in, x), /*overwrite=*/true);  // [B, n, 4D]
  return layer_forward(*proj_out, h);                                  // [B, n, D]
}

ModulationImpl::ModulationImpl(int64_t dim, int64_t chunks) {
  linear = register_module("linear", torch::nn::Linear(dim, chunks * dim));
}

torch::Tensor ModulationImpl::forward(const torch::Tensor& c) {
  return layer_forward(*linear, torch::silu(c));
}

JointBlockImpl::JointBlockImpl(int64_t dim, int64_t heads, bool last, bool dual, bool qk_norm)
    : last_(last), dual_(dual) {
  norm1 = register_module("norm1", Modulation(dim, dual ? 9 : 6));
  norm1_context = register_module("norm1_context", Modulation(dim, last ? 2 : 6));
  attn = register_module("attn", Attention(dim, heads, /*joint=*/true, last, qk_norm));
  if (dual)
    attn2 = register_module("attn2", Attention(dim, heads, /*joint=*/false, false, qk_norm));
  ff = register_module("ff", FeedForward(dim));
  if (!last) ff_context = register_module("ff_context", FeedForward(dim));
}

std::pair<torch::Tensor, torch::Tensor> JointBlockImpl::forward(const torch::Tensor& z_in,
                                                                const torch::Tensor& e_in,
                                                                const torch::Tensor& c) {
  // Image modulations: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp (+ msa2).
  const auto m = norm1(c).chunk(dual_ ? 9 : 6, 1);  // each [B, D]
  auto ec = norm1_context(c).chunk(last_ ? 2 : 6, 1);
  // The last block's context norm is AdaLayerNormContinuous: (scale, shift), scale first.
  const auto en = last_ ? norm_modulate(e_in, ec[1], ec[0]) : norm_modulate(e_in, ec[0], ec[1]);
  auto [a_z, a_e] = attn(norm_modulate(z_in, m[0], m[1]), en);
  auto z = gated(z_in, m[2], a_z);
  if (dual_) z = gated(z, m[8], attn2(norm_modulate(z_in, m[6], m[7])).first);
  z = gated(z, m[5], ff(norm_modulate(z, m[3], m[4])));
  if (last_) return {z, torch::Tensor()};
  // Text tokens: gate_msa, then the gated MLP, with the context's own six modulations.
  auto e = gated(e_in, ec[2], a_e);
  e = gated(e, ec[5], ff_context(norm_modulate(e, ec[3], ec[4])));
  return {z, e};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// inputs = [z, e (absent after the last block), c, trainable tensors...]; outputs [z', e'] (or
/// [z']). The block and the LoRA branches of the forward pass are kept as addresses in ctx.
class BlockCheckpoint : public torch::autograd::Function<BlockCheckpoint> {
 public:
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, JointBlockImpl* block,
                               bool has_e) {
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    ctx->saved_data["lora"] = reinterpret_cast<int64_t>(active_lora_branches());
    ctx->saved_data["has_e"] = has_e;
    auto [z, e] =
        block->forward(inputs[0], has_e ? inputs[1] : torch::Tensor(), inputs[has_e ? 2 : 1]);
    return e.defined() ? variable_list{z, e} : variable_list{z};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto inputs = ctx->get_saved_variables();
    auto* block = reinterpret_cast<JointBlockImpl*>(ctx->saved_data["block"].toInt());
    const auto* branches = reinterpret_cast<const LoraBranches*>(ctx->saved_data["lora"].toInt());
    const bool has_e = ctx->saved_data["has_e"].toBool();
    const size_t n_states = has_e ? 3 : 2;
    // The forward again, with autograd, from detached copies of the states (the trainable tensors
    // are the leaves themselves, so that their gradients come back by name).
    variable_list wrt;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (i < n_states) inputs[i] = inputs[i].detach().requires_grad_(inputs[i].requires_grad());
      if (inputs[i].requires_grad()) wrt.push_back(inputs[i]);
    }
    variable_list outputs, grads;
    {
      torch::AutoGradMode grad_mode(true);
      LoraScope scope(branches);
      auto [z, e] =
          block->forward(inputs[0], has_e ? inputs[1] : torch::Tensor(), inputs[n_states - 1]);
      for (auto [out, g] : {std::pair{z, grad_out[0]},
                            std::pair{e, grad_out.size() > 1 ? grad_out[1] : torch::Tensor()}})
        if (out.defined() && g.defined()) {
          outputs.push_back(out);
          grads.push_back(g);
        }
    }
    variable_list result(inputs.size() + 2);  // one per input tensor, then block and has_e
    if (outputs.empty() || wrt.empty()) return result;
    const auto got = torch::autograd::grad(outputs, wrt, grads, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0, k = 0; i < inputs.size(); ++i)
      if (inputs[i].requires_grad()) result[i] = got[k++];
    return result;
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> checkpointed(JointBlockImpl& block, const torch::Tensor& z,
                                                     const torch::Tensor& e,
                                                     const torch::Tensor& c) {
  if (!torch::GradMode::is_enabled()) return block.forward(z, e, c);
  variable_list inputs = {z};
  if (e.defined()) inputs.push_back(e);
  inputs.push_back(c);
  // What trains inside the block: its own parameters, and the adapters on its layers.
  for (const auto& p : block.parameters())
    if (p.requires_grad()) inputs.push_back(p);
  if (const LoraBranches* branches = active_lora_branches())
    for (const auto& m : block.modules(/*include_self=*/false))
      if (const auto it = branches->find(m.get()); it != branches->end())
        for (const auto& t : {it->second.A, it->second.B})
          if (t.requires_grad()) inputs.push_back(t);
  const auto out = BlockCheckpoint::apply(at::TensorList(inputs), &block, e.defined());
  return {out[0], out.size() > 1 ? out[1] : torch::Tensor()};
}

}  // namespace ramflow::sd3
