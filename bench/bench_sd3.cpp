// Benchmark of RAM steps with LoRA on an SD3-family MM-DiT with random weights, rollouts with
// classifier-free guidance (the negative prompt's embeddings as the null condition), a reward on
// the images of an SD3 VAE decoder, K (t, eps) draws per endpoint, AdamW on the adapters. Prints
// one JSON line: seconds per step (after the warm-up steps), where the time goes (the rollout with
// its scoring as the trainer times it, the decode-and-reward timed alone with the same sizes and
// taken out of it, the loss with its backward pass and the update as the rest) and the peak
// resident memory of the process.
//
//   ramflow_sd3_bench --size medium|small|tiny [--dtype D] [--steps N] [--warmup N] [--threads N]
//                     [--device D] [--no-grad-checkpoint] [--default-allocator] [--json PATH]
//                     [--profile TRACE.json]
//
// --profile records LibTorch's operators over the timed steps (LibTorch's profiler, a Chrome trace;
// bench/trace_summary.py adds up each operator's own time). Profiled steps run slower: time
// without. The process keeps freed memory as the ramflow CLI does (keep_freed_memory(): a cache of
// large CPU tensor blocks); --default-allocator leaves LibTorch's allocator as it is, to measure
// the cache.
//
//   medium  SD3.5-Medium's shape (24 blocks, D = 1536, 13 dual blocks, RMS qk-norm, 2.24 B
//           parameters), a 512 x 512 image (64 x 64 latents), 333 context tokens (77 CLIP + 256
//           T5), LoRA r 32 on the attention projections, gradient checkpointing, bfloat16; one
//           prompt, G = 2 samples, 2 rollout steps, K = 2: the memory plan at full size
//   small   the speed benchmark's model (8 blocks, D = 256, 32 x 32 latents, 77 + 32 context
//           tokens), 8 prompts x 4 samples, 10 rollout steps, K = 4, float32; its peer is
//           bench/python/sd3_ram_step.py (diffusers' SD3Transformer2DModel with PEFT)
//   tiny    a smoke test of this program (2 blocks, 16 x 16 latents, 2 x 2 samples)
#include <sys/resource.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>

#include <ramflow/ramflow.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
/// The peak resident set size of this process so far, in GB.
double peak_rss_gb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in kB
}

struct Size {
  ramflow::SD3TransformerOptions transformer;
  ramflow::VAEDecoderOptions vae;
  int64_t latent = 0, context = 0, prompts = 0, group = 0, rollout_steps = 0, draws = 0, rank = 0;
  std::string dtype;
  bool checkpointing = false;
};

Size size_of(const std::string& name) {
  using namespace ramflow;
  Size s;
  if (name == "medium") {
    s.transformer = sd35_medium_options();
    s.vae = VAEDecoderOptions();  // SD3's VAE: (128, 256, 512, 512), 2 layers, 32 groups
    s.latent = 64, s.context = 333, s.prompts = 1, s.group = 2, s.rollout_steps = 2, s.draws = 2;
    s.rank = 32, s.dtype = "bfloat16", s.checkpointing = true;
  } else if (name == "small") {
    s.transformer = SD3TransformerOptions()
                        .sample_size(32)
                        .num_layers(8)
                        .num_attention_heads(4)
                        .attention_head_dim(64)
                        .caption_projection_dim(256)
                        .joint_attention_dim(256)
                        .pooled_projection_dim(128)
                        .pos_embed_max_size(32)
                        .qk_norm("rms_norm")
                        .dual_attention_layers({0, 1, 2});
    s.vae = VAEDecoderOptions().block_out_channels({32, 64}).layers_per_block(1).norm_num_groups(8);
    s.latent = 32, s.context = 77 + 32, s.prompts = 8, s.group = 4, s.rollout_steps = 10;
    s.draws = 4, s.rank = 16, s.dtype = "float32", s.checkpointing = false;
  } else if (name == "tiny") {  // a smoke test of the benchmark itself
    s = size_of("small");
    s.transformer.num_layers(2)
        .num_attention_heads(2)
        .attention_head_dim(32)
        .caption_projection_dim(64)
        .joint_attention_dim(64)
        .pooled_projection_dim(32)
        .dual_attention_layers({0});
    s.latent = 16, s.context = 8, s.prompts = 2, s.group = 2, s.rollout_steps = 2, s.draws = 2;
    s.rank = 4;
  } else {
    throw ramflow::ConfigError("--size: medium, small or tiny, got '" + name + "'");
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ramflow;
  std::string size_name = "small", dtype_override, json_path, device_name = "cpu", trace_path;
  int steps = 2, warmup = 1, threads = 2;
  bool no_checkpointing = false, default_allocator = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--size")
      size_name = value();
    else if (a == "--dtype")
      dtype_override = value();
    else if (a == "--steps")
      steps = std::max(1, std::atoi(value().c_str()));
    else if (a == "--warmup")
      warmup = std::max(0, std::atoi(value().c_str()));
    else if (a == "--threads")
      threads = std::max(1, std::atoi(value().c_str()));
    else if (a == "--device")
      device_name = value();
    else if (a == "--json")
      json_path = value();
    else if (a == "--no-grad-checkpoint")
      no_checkpointing = true;
    else if (a == "--default-allocator")
      default_allocator = true;
    else if (a == "--profile")
      trace_path = value();
    else {
      std::cerr << "usage: ramflow_sd3_bench --size medium|small|tiny [--dtype D] [--steps N] "
                   "[--warmup N] [--threads N] [--device D] [--no-grad-checkpoint] "
                   "[--default-allocator] [--json PATH] [--profile TRACE.json]\n";
      return 2;
    }
  }
  if (!default_allocator) keep_freed_memory();
  try {
    const Size s = size_of(size_name);
    const std::string dtype = dtype_override.empty() ? s.dtype : dtype_override;
    set_threads(threads);
    const torch::Device device(device_name);
    check_dtype_computes(parse_dtype(dtype, "--dtype"), device, "--dtype " + dtype);
    const auto t_build = Clock::now();
    nlohmann::json spec = {{"type", "sd3"}, {"config", s.transformer.to_json()}, {"dtype", dtype}};
    if (s.checkpointing && !no_checkpointing) spec["gradient_checkpointing"] = true;
    auto base = make_velocity_field(spec, 0);
    base->to(device);
    int64_t parameters = 0;  // the base's, before LoRA freezes it
    for (const auto& p : base->parameters()) parameters += p.numel();
    const double build_seconds = since(t_build);
    auto decoder =
        make_decoder({{"type", "vae"}, {"config", s.vae.to_json()}, {"dtype", dtype}}, 0);
    decoder->to(device);
    const int64_t C = s.transformer.in_channels(), L = s.latent;
    const std::vector<int64_t> latent = {C, L, L};
    const auto image_shape = decoder->decoded_shape(latent);
    int64_t image_dim = 1;
    for (auto d : image_shape) image_dim *= d;
    // A reward on the decoded images: their brightness (any reward costs the decode).
    const RewardPtr reward =
        decoded_reward(decoder, make_reward({{"type", "brightness"}}, image_dim));
    // Random prompt embeddings: one row per prompt, and the negative prompt's.
    Rng rng(1);
    const int64_t D = s.transformer.joint_attention_dim(),
                  Pd = s.transformer.pooled_projection_dim();
    const auto context = rng.randn({s.prompts + 1, s.context, D}),
               pooled = rng.randn({s.prompts + 1, Pd});
    const PromptEmbeddings embeddings{context, pooled};  // row K: the negative prompt's
    auto rows = [&](const torch::Tensor& ids) {
      return embeddings.conditions(ids, nullptr, "ramflow_sd3_bench");
    };
    ConditionSource cond{
        [&](int64_t groups, Rng& r) { return rows(r.uniform_int(s.prompts, {groups})); },
        rows(torch::full({1}, kNullId, torch::kLong))};
    auto policy = LoraVelocityField(
        base, LoraOptions().rank(s.rank).alpha(2.0 * s.rank).targets(sd3_lora_targets()));
    policy->to(device);
    const auto rollout = SampleOptions().steps(s.rollout_steps).shift(3.0).grid("diffusers");
    const double cfg = 2.0;
    Trainer trainer(policy.ptr(), base, reward,
                    std::make_unique<RAM>(RAMOptions().multiplier(100.0).draws(s.draws)),
                    TrainerOptions()
                        .sample_shape(latent)
                        .groups(s.prompts)
                        .group_size(s.group)
                        .rollout(rollout)
                        .cfg(cfg)
                        .lr(3e-4)
                        .beta2(0.99)
                        .weight_decay(1e-4),
                    cond);
    for (int i = 0; i < warmup; ++i) trainer.step();
    std::optional<torch::autograd::profiler::RecordProfile> profile;
    if (!trace_path.empty()) profile.emplace(trace_path);
    const auto t0 = Clock::now();
    double rollout_and_reward = 0;  // the trainer's own timing of its rollouts with their scoring
    for (int i = 0; i < steps; ++i) rollout_and_reward += trainer.step().rollout_seconds;
    const double per_step = since(t0) / steps;
    profile.reset();  // writes the trace
    rollout_and_reward /= steps;
    // The decode and the reward timed alone on a batch of the same size, taken out of the rollout.
    const int64_t B = s.prompts * s.group;
    const auto x0 = rng.randn({B, C, L, L}, torch::TensorOptions().device(device));
    const Condition batch_cond = rows(rng.uniform_int(s.prompts, {B})).to(device);
    const auto t2 = Clock::now();
    {
      torch::NoGradGuard no_grad;
      reward->score(x0, batch_cond);
    }
    const double reward_seconds = since(t2);
    const nlohmann::json out = {{"size", size_name},
                                {"dtype", dtype},
                                {"device", device.str()},
                                {"threads", threads},
                                {"parameters", parameters},
                                {"trainable_parameters", parameter_count(*policy)},
                                {"grad_checkpoint", s.checkpointing && !no_checkpointing},
                                {"latents", latent},
                                {"context_tokens", s.context},
                                {"endpoints", B},
                                {"rollout_steps", s.rollout_steps},
                                {"draws", s.draws},
                                {"build_seconds", build_seconds},
                                {"seconds_per_step", per_step},
                                {"rollout_seconds", rollout_and_reward - reward_seconds},
                                {"decode_and_reward_seconds", reward_seconds},
                                {"loss_and_update_seconds", per_step - rollout_and_reward},
                                {"peak_rss_gb", peak_rss_gb()},
                                {"tensor_cache", !default_allocator},
                                {"tensor_cache_hits", tensor_cache_stats().hits},
                                {"tensor_cache_misses", tensor_cache_stats().misses}};
    std::cout << out.dump() << std::endl;
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
    return 0;
  } catch (const ConfigError& e) {
    std::cerr << "ramflow_sd3_bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ramflow_sd3_bench: " << e.what() << "\n";
    return 1;
  }
}
