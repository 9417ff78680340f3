#!/usr/bin/env python3
"""The image RAM step of `ramflow_image_bench`, written in Python with PyTorch, for a speed comparison.

Same configuration as bench/bench_image_ram.cpp, which is the fashion task's preset: the shipped base
U-Net (models/fashion_base.safetensors, 462,689 parameters) as policy and reference, P = 4 class groups
of G = 8 endpoints from 10 Euler steps (no grad), the classifier reward (log-probability of the requested
class under models/fashion_classifier.safetensors), m = 2, K = 4 (t, eps) draws per endpoint in one
batched pass, AdamW lr 3e-5. The networks are python/ramflow_models.py's, which give ramflow's velocity
to float rounding (tests/interop_check.py). Only the step is timed.

  /usr/bin/python3 bench/python/image_ram_step.py [--steps N] [--threads N] [--json PATH] [--device D]
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
import ramflow_models as rm  # noqa: E402
import blas_info  # noqa: E402  (next to this file)

P, G, ROLLOUT_STEPS, K, M, LR = 4, 8, 10, 4, 2.0, 3e-5


def rollout(policy, device):
    """P labels, each for G endpoints; Euler from t = 1 to t = 0, x <- x + (t_next - t) v (no grad)."""
    B = P * G
    with torch.no_grad():
        labels = torch.randint(0, 10, (P,), device=device).repeat_interleave(G)
        x = torch.randn(B, 1, 28, 28, device=device)
        for k in range(ROLLOUT_STEPS):
            t, t_next = 1.0 - k / ROLLOUT_STEPS, 1.0 - (k + 1) / ROLLOUT_STEPS
            x = x + (t_next - t) * policy(x, torch.full((B,), t, device=device), labels)
    return x, labels


def reward(judge, x0, labels):
    """log p(label | x0) under the judge."""
    with torch.no_grad():
        return torch.log_softmax(judge(x0), dim=1).gather(1, labels[:, None])[:, 0]


def ram_step(policy, ref, judge, opt, device):
    x0, labels = rollout(policy, device)
    r = reward(judge, x0, labels)
    B = P * G
    # K draws per endpoint: x_t = (1 - t) x0 + t eps; target = v_ref + m r ((eps - x0) - v.detach()).
    x0k = x0.repeat_interleave(K, 0)
    ck = labels.repeat_interleave(K, 0)
    s = (M * r).repeat_interleave(K, 0)[:, None, None, None]
    t = torch.rand(B * K, device=device)
    eps = torch.randn_like(x0k)
    xt = (1 - t[:, None, None, None]) * x0k + t[:, None, None, None] * eps
    with torch.no_grad():
        v_ref = ref(xt, t, ck)
    v = policy(xt, t, ck)
    target = v_ref + s * ((eps - x0k) - v.detach())
    loss = torch.nn.functional.mse_loss(v, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def measure(threads, n_steps, device):
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)
    models = os.path.join(ROOT, "models")
    policy = rm.load(os.path.join(models, "fashion_base.safetensors")).to(device).train()
    ref = rm.load(os.path.join(models, "fashion_base.safetensors")).to(device)
    for p in ref.parameters():
        p.requires_grad_(False)
    judge = rm.load_classifier(os.path.join(models, "fashion_classifier.safetensors")).to(device)
    for p in judge.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=LR, weight_decay=0.0)
    for _ in range(2):  # warm-up
        ram_step(policy, ref, judge, opt, device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        ram_step(policy, ref, judge, opt, device)
    wall, cpu = 1000.0 * (time.perf_counter() - t0) / n_steps, 1000.0 * (time.process_time() - c0) / n_steps
    # The phases alone, same sizes: the rollout and the reward; the loss, backward and AdamW are the rest.
    t0 = time.perf_counter()
    for _ in range(n_steps):
        x0, labels = rollout(policy, device)
    rollout_ms = 1000.0 * (time.perf_counter() - t0) / n_steps
    t0 = time.perf_counter()
    for _ in range(n_steps):
        reward(judge, x0, labels).sum().item()
    reward_ms = 1000.0 * (time.perf_counter() - t0) / n_steps
    return {"step_ms": wall, "step_cpu_ms": cpu, "rollout_ms": rollout_ms, "reward_ms": reward_ms,
            "loss_update_ms": wall - rollout_ms - reward_ms}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = ap.parse_args()
    n = measure(args.threads, args.steps, args.device)
    info = blas_info.describe(torch)
    kernel = blas_info.kernel_label(info)
    print(f"PyTorch {torch.__version__}: image RAM step (fashion preset: P={P} x G={G}, {ROLLOUT_STEPS} Euler "
          f"rollout steps, K={K}, {args.device}, {args.threads} threads)")
    print(f"matrix products: {kernel}; ATen CPU kernels: {info['aten_cpu_capability']}")
    w = n["step_ms"]
    print(f"{w:.1f} ms / image RAM step ({n['step_cpu_ms']:.1f} ms processor time)")
    print(f"  rollout {n['rollout_ms']:.1f} ms ({100 * n['rollout_ms'] / w:.1f}%), reward {n['reward_ms']:.1f} ms "
          f"({100 * n['reward_ms'] / w:.1f}%), loss + backward + AdamW {n['loss_update_ms']:.1f} ms "
          f"({100 * n['loss_update_ms'] / w:.1f}%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": args.device, "kernel": kernel,
                       "aten_cpu_capability": info["aten_cpu_capability"], "env": info["env"],
                       "threads": args.threads, **n}, f, indent=2)


if __name__ == "__main__":
    main()
