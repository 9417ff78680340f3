#!/usr/bin/env python3
"""Fits the degree-5 polynomial of the AVX-512 sigmoid in cpu_kernels.cpp (SigmoidAVX512).

p(r) = 1 + c1 r + ... + c5 r^5 ~ exp(r) on [-ln2/2, ln2/2], with p(0) = 1 exactly, for the least maximum
relative error (Lawson's iteratively reweighted least squares on a dense grid). Prints the coefficients
rounded to float32 and the largest relative error of p, in float64 and evaluated in float32 by Horner's
rule as the kernel does. Needs numpy.  Usage: python3 src/core/fit_exp_polynomial.py
"""
import numpy as np

half = np.log(2) / 2
r = np.linspace(-half, half, 20001)
f = np.exp(r)
degree = 5
# Relative error (p - f) / f = A c - b with p = 1 + sum c_k r^k.
A = np.stack([r**k for k in range(1, degree + 1)], axis=1) / f[:, None]
b = (f - 1) / f
w = np.ones_like(r)
for _ in range(200):  # Lawson: weights grow where the error is largest
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
    w = w * np.abs(A @ c - b)
    w /= w.sum()
c32 = c.astype(np.float32)
p64 = 1 + sum(c[k] * r ** (k + 1) for k in range(degree))
r32 = r.astype(np.float32)
p32 = np.float32(c32[-1])
for k in range(degree - 2, -1, -1):
    p32 = p32 * r32 + c32[k]
p32 = p32 * r32 + np.float32(1)
print("c1..c5 (float32):", ", ".join(f"{x:.7e}" for x in c32))
print(f"max relative error: {np.max(np.abs(p64 / f - 1)):.2e} (float64), "
      f"{np.max(np.abs(p32.astype(np.float64) / f - 1)):.2e} (float32 Horner)")
