"""The peer of `ramflow_sd3_bench --size small`: the same RAM step with LoRA in Python, on diffusers'
SD3Transformer2DModel with PEFT adapters and diffusers' AutoencoderKL, on PyPI's PyTorch.

Same sizes as the C++ benchmark: 8 blocks, D = 256 (4 heads of 64), 3 dual-attention blocks, RMS
qk-norm, 32 x 32 latents, 77 + 32 context tokens, LoRA r 16 (alpha 32) on the attention
projections; 8 prompts x 4 samples from 10 guided Euler steps (guidance 2) on the scheduler's grid
(shift 3); the images of a small VAE decoder scored by their brightness; RAM with m = 100, K = 4
(t, eps) draws per endpoint: target = v_ref + m r ((eps - x0) - v_stop), the reference being the
same network with the adapters disabled; AdamW (3e-4, betas 0.9/0.99, weight decay 1e-4) on the
adapters. Prints one JSON line like the C++ benchmark's: seconds per step after the warm-up steps,
and the rollout, the decode with the reward, the loss with the update, each timed inside the steps.

  python bench/python/sd3_ram_step.py [--steps N] [--warmup N] [--threads N] [--compile] [--dtype D]
                                      [--profile TRACE.json]

--profile records PyTorch's operators over the timed steps as a Chrome trace, as ramflow_sd3_bench's
--profile does (bench/trace_summary.py compares the two). Profiled steps run slower: time without.
"""
import argparse
import json
import resource
import time

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from peft import LoraConfig

TARGETS = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
           "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]
P, G, STEPS_ROLLOUT, K, M, CFG, CONTEXT = 8, 4, 10, 4, 100.0, 2.0, 77 + 32


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--profile", metavar="TRACE", help="write a Chrome trace of the timed steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    t_build = time.perf_counter()
    model = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, num_layers=8,
                                  attention_head_dim=64, num_attention_heads=4,
                                  joint_attention_dim=256, caption_projection_dim=256,
                                  pooled_projection_dim=128, out_channels=16, pos_embed_max_size=32,
                                  dual_attention_layers=(0, 1, 2), qk_norm="rms_norm")
    model.requires_grad_(False)
    model.to(dev, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    model.add_adapter(LoraConfig(r=16, lora_alpha=32, init_lora_weights="gaussian",
                                 target_modules=TARGETS))
    for name, p in model.named_parameters():  # adapters in float32, as ramflow keeps them
        if "lora_" in name:
            p.data = p.data.float()
    build_seconds = time.perf_counter() - t_build
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                        norm_num_groups=8, latent_channels=16, use_quant_conv=False,
                        use_post_quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609)
    vae.requires_grad_(False)
    vae.to(dev, dtype)
    forward = torch.compile(model) if args.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.99), weight_decay=1e-4)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(STEPS_ROLLOUT)
    sigmas = scheduler.sigmas.tolist()
    context = torch.randn(P + 1, CONTEXT, 256, device=dev)
    pooled = torch.randn(P + 1, 128, device=dev)
    B = P * G

    def v(x, t, ctx, pool):
        """The network's velocity at times t [n] (in [0, 1]), in float32."""
        out = forward(hidden_states=x.to(dtype), timestep=(1000 * t).to(dtype),
                      encoder_hidden_states=ctx.to(dtype), pooled_projections=pool.to(dtype),
                      return_dict=False)[0]
        return out.float()

    def rollout(ids):
        x = torch.randn(B, 16, 32, 32, device=dev)
        ctx = torch.cat([context[P:].expand(B, -1, -1), context[ids]])
        pool = torch.cat([pooled[P:].expand(B, -1), pooled[ids]])
        with torch.no_grad():
            for k in range(STEPS_ROLLOUT):
                t = torch.full((2 * B,), sigmas[k], device=dev)
                vu, vc = v(torch.cat([x, x]), t, ctx, pool).chunk(2)
                x = x + (sigmas[k + 1] - sigmas[k]) * (vu + CFG * (vc - vu))
        return x

    def reward(x0):
        with torch.no_grad():
            images = vae.decode((x0 / 1.5305 + 0.0609).to(dtype), return_dict=False)[0]
            return images.float().clamp(-1, 1).mean(dim=(1, 2, 3))

    parts = {"rollout_seconds": 0.0, "decode_and_reward_seconds": 0.0}

    def step():
        ids = torch.randint(P, (P,), device=dev).repeat_interleave(G)
        t_start = time.perf_counter()
        x0 = rollout(ids)
        t_rollout = time.perf_counter()
        s = M * reward(x0)  # the raw signal m r
        parts["rollout_seconds"] += t_rollout - t_start
        parts["decode_and_reward_seconds"] += time.perf_counter() - t_rollout
        x0k, sk = x0.repeat_interleave(K, 0), s.repeat_interleave(K)
        ctx, pool = context[ids].repeat_interleave(K, 0), pooled[ids].repeat_interleave(K, 0)
        t = torch.rand(B * K, device=dev)
        eps = torch.randn_like(x0k)
        xt = (1 - t.view(-1, 1, 1, 1)) * x0k + t.view(-1, 1, 1, 1) * eps
        with torch.no_grad():
            model.disable_adapters()
            v_ref = v(xt, t, ctx, pool)
            model.enable_adapters()
        vt = v(xt, t, ctx, pool)
        target = v_ref + sk.view(-1, 1, 1, 1) * ((eps - x0k) - vt.detach())
        loss = (vt - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):  # warm-up (and compilation)
        step()
    for k in parts:
        parts[k] = 0.0
    profile = torch.autograd.profiler.profile() if args.profile else None
    if profile:
        profile.__enter__()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - t0) / args.steps
    if profile:
        profile.__exit__(None, None, None)
        profile.export_chrome_trace(args.profile)
    rollout_seconds = parts["rollout_seconds"] / args.steps
    reward_seconds = parts["decode_and_reward_seconds"] / args.steps
    print(json.dumps({
        "peer": "diffusers + PEFT" + (" + torch.compile" if args.compile else ""),
        "torch": torch.__version__, "dtype": args.dtype, "device": str(dev), "threads": args.threads,
        "parameters": parameters, "trainable_parameters": sum(p.numel() for p in params),
        "endpoints": B, "rollout_steps": STEPS_ROLLOUT, "draws": K,
        "build_seconds": build_seconds, "seconds_per_step": per_step,
        "rollout_seconds": rollout_seconds, "decode_and_reward_seconds": reward_seconds,
        "loss_and_update_seconds": per_step - rollout_seconds - reward_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}))


if __name__ == "__main__":
    main()
