#!/usr/bin/env python3
"""The RAM training step of `ramflow_bench`, written in Python with PyTorch, for a speed comparison.

Same configuration as bench/bench_ram.cpp: the 8-mode ring, the 35,714-parameter MLP with Fourier time
features, G = 32 endpoints from 25 Euler steps (no grad), bump reward at (4, 0) with scale 2.5, m = 5,
K = 4 (t, eps) draws per endpoint in one batched pass, AdamW lr 1e-4. Only the RAM step is timed
(weights are random: speed does not depend on them).

Runs under any PyTorch from 1.13 on: Debian's (/usr/bin/python3, OpenBLAS) and the newest from PyPI
(MKL), which bench/speed_vs_python.sh installs into bench/.venv. Both run the same float32 arithmetic:
the thread count is set with torch.set_num_threads, float32 matrix products at full precision
(set_float32_matmul_precision("highest"), no TF32 or bfloat16 shortcuts), the optimiser with its
defaults. The JSON records the torch version and the BLAS and kernel the products ran on
(blas_info.py: OpenBLAS's core, e.g. SkylakeX, or MKL's code path) and the BLAS lines of
torch.__config__.show().

  /usr/bin/python3 bench/python/ram_step.py [--steps N] [--threads N] [--json PATH] [--device D]
"""
import argparse
import json
import math
import os
import time

import torch

import blas_info  # next to this file


class VelocityNet(torch.nn.Module):
    def __init__(self, dim=2, hidden=128, depth=3, freqs=8):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(freqs)) * math.pi)
        layers, width = [], dim + 2 * freqs
        for _ in range(depth):
            layers.append(torch.nn.Linear(width, hidden))
            width = hidden
        layers.append(torch.nn.Linear(hidden, dim))
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x, t):
        phase = t[:, None] * self.freqs
        h = torch.cat([x, torch.sin(phase), torch.cos(phase)], dim=1)
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i + 1 < len(self.layers):
                h = torch.nn.functional.silu(h)
        return h


def bump(x):
    center = torch.tensor([4.0, 0.0], device=x.device)
    return torch.exp(-((x - center) ** 2).sum(1) / (2 * 2.5 ** 2))


def ram_step(policy, ref, opt, G=32, K=4, steps=25, m=5.0, device="cpu"):
    # On-policy endpoints: Euler from t = 1 to t = 0, x <- x + (t_next - t) v.
    with torch.no_grad():
        x = torch.randn(G, 2, device=device)
        for k in range(steps):
            t, t_next = 1.0 - k / steps, 1.0 - (k + 1) / steps
            x = x + (t_next - t) * policy(x, torch.full((G,), t, device=device))
        x0 = x
        r = bump(x0)
    # K draws per endpoint; target = v_ref + m r ((eps - x0) - v.detach()).
    x0k = x0.repeat_interleave(K, 0)
    s = (m * r).repeat_interleave(K, 0)[:, None]
    t = torch.rand(G * K, device=device)
    eps = torch.randn_like(x0k)
    xt = (1 - t[:, None]) * x0k + t[:, None] * eps
    with torch.no_grad():
        v_ref = ref(xt, t)
    v = policy(xt, t)
    target = v_ref + s * ((eps - x0k) - v.detach())
    loss = torch.nn.functional.mse_loss(v, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def measure(threads, n_steps, device="cpu"):
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")  # the default; newer versions may offer TF32 / bfloat16
    torch.manual_seed(0)
    policy, ref = VelocityNet().to(device), VelocityNet().to(device)
    ref.load_state_dict(policy.state_dict())
    for p in ref.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
    for _ in range(20):  # warm-up
        ram_step(policy, ref, opt, device=device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        ram_step(policy, ref, opt, device=device)  # loss.item() waits for the device every step
    # wall-clock and processor time (the latter excludes time stolen by other machines on a shared host)
    return (1000.0 * (time.perf_counter() - t0) / n_steps, 1000.0 * (time.process_time() - c0) / n_steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", default="")
    ap.add_argument("--threads", type=int, default=0, help="only this thread count (default: 1, then all)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = ap.parse_args()
    all_threads = os.cpu_count() or 1
    counts = [args.threads] if args.threads > 0 else ([1, all_threads] if all_threads > 1 else [1])
    rows = []
    for n in counts:
        wall, cpu = measure(n, args.steps, args.device)
        rows.append({"threads": n, "ram_step_ms": wall, "ram_step_cpu_ms": cpu})
    info = blas_info.describe(torch)  # after the runs: the libraries are loaded, the threads set
    kernel = blas_info.kernel_label(info)
    print(f"PyTorch {torch.__version__}: RAM step on the ring (G=32, K=4, 25 Euler rollout steps, {args.device})")
    print(f"matrix products: {kernel}; ATen CPU kernels: {info['aten_cpu_capability']}")
    for r in rows:
        print(f"threads {r['threads']:<3} {r['ram_step_ms']:8.3f} ms / RAM step ({r['ram_step_cpu_ms']:.3f} ms processor time)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": args.device, "kernel": kernel, "blas": info["blas"],
                       "aten_cpu_capability": info["aten_cpu_capability"], "config": info["config"],
                       "env": info["env"], "float32_matmul_precision": torch.get_float32_matmul_precision(),
                       "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
