#!/usr/bin/env python3
"""Which BLAS, and which of its kernels, a PyTorch process runs; is it correct; how fast is it.

Used by ram_step.py (recorded in its JSON) and by bench/speed_vs_python.sh, which runs it under each
OPENBLAS_CORETYPE it considers:

  python3 blas_info.py [--check] [--gflops SECONDS]   # imports torch; prints one JSON object
  python3 blas_info.py --library PATH                 # no torch: the OpenBLAS core of a library file

OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels ("core") from the processor at load time,
or from OPENBLAS_CORETYPE; `openblas_get_corename` says which it took. PyTorch wheels on x86-64 carry
MKL instead, whose code path (`Processor` of mkl_get_version) is reported in its place.
"""
import argparse
import ctypes
import json
import os
import re
import time

# Environment variables that decide the kernels and the thread counts; recorded with the result.
ENV_KEYS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "MKL_ENABLE_INSTRUCTIONS")


def _mapped_libraries():
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if path.startswith("/") and ".so" in path and path not in libs:
                libs.append(path)
    return libs


def openblas_of(path):
    """OpenBLAS's core name and build string from the shared library at path, or None."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for suffix in ("", "64_"):
        try:
            corename = getattr(lib, "openblas_get_corename" + suffix)
        except AttributeError:
            continue
        corename.restype = ctypes.c_char_p
        info = {"library": "OpenBLAS", "path": os.path.realpath(path),
                "core": corename().decode(errors="replace")}
        try:
            config = getattr(lib, "openblas_get_config" + suffix)
            config.restype = ctypes.c_char_p
            info["build"] = config().decode(errors="replace").strip()
        except AttributeError:
            pass
        return info
    return None


class _MKLVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("update", ctypes.c_int),
                ("status", ctypes.c_char_p), ("build", ctypes.c_char_p), ("processor", ctypes.c_char_p),
                ("platform", ctypes.c_char_p)]


def mkl_of(path):
    """MKL's version and code path (the 'Processor' it optimises for) from a library holding MKL."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for name in ("MKL_Get_Version", "mkl_get_version", "mkl_serv_get_version"):
        fn = getattr(lib, name, None)
        if fn is None:
            continue
        v = _MKLVersion()
        fn(ctypes.byref(v))
        # 'Processor' names the code path MKL dispatched to: "Intel(R) Advanced Vector Extensions 512
        # ..." and the like on Intel processors; "Intel(R) Architecture processors" is its generic path,
        # the one it takes on other vendors' processors.
        return {"library": "MKL", "path": os.path.realpath(path),
                "version": "%d.%d update %d" % (v.major, v.minor, v.update),
                "core": (v.processor or b"?").decode(errors="replace")}
    return None


def config_summary(torch):
    """The lines of torch.__config__.show() that name the BLAS, MKL, oneDNN and the ATen CPU kernels."""
    text = torch.__config__.show()
    lines = [l.strip(" -") for l in text.splitlines()
             if re.search(r"Math Kernel Library|MKL-DNN|oneDNN|LAPACK|CPU capability|OpenBLAS", l)
             and "Build settings" not in l]
    settings = dict(re.findall(r"\b(BLAS_INFO|LAPACK_INFO|USE_MKL|USE_MKLDNN|USE_OPENMP)=([^,\s]*)", text))
    lines += ["%s=%s" % kv for kv in sorted(settings.items())]
    return lines, settings.get("BLAS_INFO", "")


def describe(torch):
    """What this (already imported) torch runs its matrix products with."""
    summary, blas_info = config_summary(torch)
    libs = _mapped_libraries()
    blas = None
    if blas_info == "mkl":
        # MKL is linked statically into libtorch_cpu in the PyPI wheels; dynamically in some builds.
        for path in [p for p in libs if re.search(r"libmkl|libtorch_cpu", os.path.basename(p))]:
            blas = mkl_of(path)
            if blas:
                break
    else:
        # OpenBLAS loaded by torch (Debian: through libblas.so.3), or linked into libtorch_cpu. The copy a
        # NumPy wheel brings along (numpy.libs/libscipy_openblas...) is not the one torch calls.
        for path in [p for p in libs if ("openblas" in os.path.basename(p) or "libtorch_cpu" in p)
                     and "scipy_openblas" not in p and "numpy.libs" not in p]:
            blas = openblas_of(path)
            if blas:
                break
    if blas is None:
        blas = {"library": blas_info or "unknown", "core": "unknown"}
    elif blas["library"] == "MKL":  # "2024.2" as torch.__config__ says, rather than "2024.0 update 2"
        m = re.search(r"Math Kernel Library Version ([0-9][^\s-]*)", "\n".join(summary))
        blas["version"] = m.group(1) if m else blas["version"]
    # ATen's own vectorised kernels (element-wise operators); torch.backends.cpu has it from 2.0 on.
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    cap = cap() if cap else next((l.split(":")[-1].strip() for l in summary if "CPU capability" in l), None)
    return {"torch": torch.__version__, "blas": blas, "config": summary,
            "aten_cpu_capability": cap, "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ}}


def kernel_label(info):
    """'OpenBLAS SkylakeX' and the like, for a table."""
    b = info["blas"]
    if b["library"] == "MKL":
        return "MKL %s, %s" % (b.get("version", "?"), b["core"])
    return "%s %s" % (b["library"], b["core"])


def matmul_check(torch, tolerance=1e-4):
    """Float32 matrix products as nn.Linear and its backward call them (plain, transposed operands,
    addmm with a bias) against a float64 reference computed without BLAS (broadcast multiply and sum).
    The error of each entry is scaled by (|A| |B|)_ij, which bounds float32 rounding by about k * 2^-24
    (1.5e-5 for k = 256); a wrong kernel is off by order one."""
    g = torch.Generator().manual_seed(0)
    worst, cases = 0.0, []
    for (m, k, n) in ((256, 256, 256), (128, 18, 128), (128, 128, 2), (33, 129, 67)):
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        bias = torch.randn(n, generator=g)
        a64, b64 = a.double(), b.double()
        ref = (a64[:, :, None] * b64[None, :, :]).sum(1)
        scale = (a64.abs()[:, :, None] * b64.abs()[None, :, :]).sum(1)
        for name, got, want in (
                ("mm", torch.mm(a, b), ref),
                ("mm(A^T^T, B)", torch.mm(a.t().contiguous().t(), b), ref),
                ("mm(A, B^T^T)", torch.mm(a, b.t().contiguous().t()), ref),
                ("addmm", torch.addmm(bias, a, b), ref + bias.double()),
                ):
            s = scale + (bias.double().abs() if name == "addmm" else 0)
            err = ((got.double() - want).abs() / s).max().item()
            if err != err:  # NaN
                err = float("inf")
            cases.append({"shape": [m, k, n], "op": name, "max_scaled_error": err})
            worst = max(worst, err)
    return {"ok": worst <= tolerance, "max_scaled_error": worst, "tolerance": tolerance, "cases": cases}


def sgemm_gflops(torch, seconds):
    """Float32 throughput of the products of a RAM step's batched pass: (128 x 128) times (128 x 128)^T
    plus a bias, as nn.Linear calls it, in GFLOP/s over about `seconds`."""
    g = torch.Generator().manual_seed(0)
    x, w, bias = torch.randn(128, 128, generator=g), torch.randn(128, 128, generator=g), torch.randn(128, generator=g)
    for _ in range(50):
        torch.addmm(bias, x, w.t())
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            torch.addmm(bias, x, w.t())
        reps += 100
    return 2.0 * 128 ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="check float32 products against float64")
    ap.add_argument("--gflops", type=float, default=0.0, metavar="SECONDS", help="time sgemm this long")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads first")
    ap.add_argument("--library", default="", help="only report the OpenBLAS core of this library (no torch)")
    args = ap.parse_args()
    if args.library:
        info = openblas_of(args.library)
        print(json.dumps({"blas": info or {"library": "unknown", "path": args.library, "core": "unknown"},
                          "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ}}))
        return
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = describe(torch)
    out["kernel"] = kernel_label(out)
    if args.check:
        out["check"] = matmul_check(torch)
    if args.gflops > 0:
        out["sgemm_gflops"] = sgemm_gflops(torch, args.gflops)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
