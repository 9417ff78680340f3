#!/usr/bin/env bash
# RAM step: ramflow against the same loop in Python + PyTorch (bench/python/ram_step.py), each peer in its
# best correct BLAS configuration, on THREADS threads.
#
# Peers, run in alternation ROUNDS times so that load from other processes hits them alike:
#   ramflow                 build/ramflow_bench --ram-only (the fused CPU kernels)
#   ramflow --unfused       LibTorch's operators, whose matrix products go to OpenBLAS
#   Python (Debian)         PYTHON's torch (Debian's 1.13 over OpenBLAS), with OpenBLAS's own choice of
#                           kernels ("core"), and again with OPENBLAS_CORETYPE forced to SkylakeX where the
#                           processor has AVX-512F (Haswell where it has only AVX2)
#   Python (PyPI)           the newest torch from PyPI (MKL inside), in the virtual environment VENV; made
#                           on the first run (python3 -m venv, pip install torch numpy: several GB) and
#                           reused thereafter; to update it: $VENV/bin/pip install -U torch
# Before the rounds, each OpenBLAS configuration (default and forced core) multiplies random float32
# matrices (256 x 256 and the model's shapes, plain, transposed and with a bias) and compares them with a
# float64 product computed without BLAS; one that is wrong is dropped with its reason (so is a forced core
# that OpenBLAS did not apply, or one it had already picked). The PyPI torch is checked the same way. Of
# the correct OpenBLAS configurations, the faster at the model's 128 x 128 products (alternating probes)
# also runs both ramflow peers. Each run records the kernel it used (blas_info.py: OpenBLAS's
# openblas_get_corename, MKL's code path); for ramflow, which cannot say, the OpenBLAS library it links
# (ldd) is asked under the same environment.
#
# Prints the peers and their kernels; then, by wall-clock and by processor time (which excludes time
# stolen by other virtual machines on a shared host), each peer's median and rounds, and the speed-up of
# ramflow (and of ramflow --unfused) over the fastest Python peer, as the ratio of the medians and as the
# median of the per-round ratios (each round's Python runs sit between its two ramflow runs, under the
# same load; the Python peers' order rotates from round to round). Writes all of it to OUT as JSON.
#
# Environment:
#   THREADS      threads for every peer, a number or "all" (every core); default 1. OpenBLAS, OpenMP and
#                MKL are pinned to it as well (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS):
#                torch.set_num_threads does not reach OpenBLAS's own thread pool
#   ROUNDS       alternating rounds (default 5)          STEPS  RAM steps timed per run (default 300)
#   OUT          JSON report (default $RAMFLOW_BUILD_DIR/speed_vs_python.json)
#   RAMFLOW_BUILD_DIR  where ramflow_bench is (default build)
#   PYTHON       interpreter of the Debian peer (default /usr/bin/python3; needs torch:
#                apt-get install python3-torch); also creates VENV
#   PYPI_TORCH   0: leave out the PyPI peer (and do not create VENV); default 1
#   VENV         its virtual environment (default bench/.venv, ignored by git)
#   CORETYPE     the OpenBLAS core to try besides the default (default auto: SkylakeX / Haswell as above;
#                none: only the default). An OPENBLAS_CORETYPE set by the caller is ignored.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RAMFLOW_BUILD_DIR:-$root/build}"
bench="$build/ramflow_bench"
python="${PYTHON:-/usr/bin/python3}"
venv="${VENV:-$root/bench/.venv}"
pypi_torch="${PYPI_TORCH:-1}"
rounds="${ROUNDS:-5}"
threads="${THREADS:-1}"
steps="${STEPS:-300}"
coretype="${CORETYPE:-auto}"
out="${OUT:-$build/speed_vs_python.json}"
pydir="$root/bench/python"

die() { echo "speed_vs_python: $*" >&2; exit 1; }
say() { echo "speed_vs_python: $*" >&2; }

[ "$threads" = all ] && threads="$(nproc)"
for v in rounds steps threads; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a positive whole number (THREADS may also be \"all\"), not '${!v}'"
done
[ -x "$bench" ] || die "$bench not found (build with scripts/build, or set RAMFLOW_BUILD_DIR)"
command -v "$python" >/dev/null || die "no interpreter $python (set PYTHON)"
"$python" -c "import torch" 2>/dev/null || die "$python has no torch (Debian: apt-get install python3-torch; or set PYTHON)"

# The newest PyTorch from PyPI, installed once into its own virtual environment.
if [ "$pypi_torch" != 0 ]; then
  if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtual environment $venv (once)"
    "$python" -m venv "$venv" ||
      die "could not create $venv (Debian: apt-get install python3-venv); PYPI_TORCH=0 leaves the PyPI peer out"
  fi
  if ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
    say "installing the newest torch from PyPI into $venv (once; several GB)"
    "$venv/bin/python" -m pip install torch numpy >&2 ||
      die "pip install torch numpy into $venv failed (network?); PYPI_TORCH=0 leaves the PyPI peer out"
  fi
fi

# One thread means one: torch.set_num_threads(1) does not reach OpenBLAS's own thread pool (Debian's
# LibTorch calls BLAS generically), which otherwise spins a second core inside every matrix product.
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  say "ignoring OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment (CORETYPE chooses the core to try)"
  unset OPENBLAS_CORETYPE
fi
if [ "$coretype" = auto ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2 || true) "
  case "$flags" in
    *" avx512f "*) coretype=SkylakeX ;;
    *" avx2 "*) coretype=Haswell ;;
    *) coretype=none ;;
  esac
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# quiet WHAT COMMAND...: run it with its output kept aside; show that output if it fails.
quiet() {
  local what="$1"
  shift
  if ! "$@" >"$tmp/last.log" 2>&1; then
    cat "$tmp/last.log" >&2
    die "$what failed: $*"
  fi
}
# probe NAME ROUND [VAR=VALUE]: blas_info.py under the Debian torch with that environment: correctness
# check, kernel, and the throughput of the model's products.
probe() {
  local name="$1" r="$2"
  shift 2
  env "$@" "$python" "$pydir/blas_info.py" --check --gflops 0.3 --threads "$threads" >"$tmp/probe_${name}_$r.json" ||
    die "blas_info.py failed under ${*:-the default environment}"
}

# OpenBLAS: the default core and the forced one, checked and timed in alternation.
if [ "$coretype" = none ]; then
  say "checking OpenBLAS's default core ($threads thread(s))"
else
  say "checking OpenBLAS's default core and OPENBLAS_CORETYPE=$coretype ($threads thread(s))"
fi
for r in 1 2 3; do
  probe default "$r"
  if [ "$coretype" != none ]; then
    probe forced "$r" "OPENBLAS_CORETYPE=$coretype"
  fi
done
# Decides, from the probes: which configurations are kept, why others are not, and the faster of the
# kept ones (for ramflow). Writes shell assignments, read back with `source`.
"$python" - "$tmp" "$coretype" >"$tmp/decisions.sh" <<'PY'
import json, shlex, statistics, sys
tmp, coretype = sys.argv[1], sys.argv[2]
out, summary = {}, {}
for name in ("default", "forced"):
    try:
        runs = [json.load(open(f"{tmp}/probe_{name}_{r}.json")) for r in (1, 2, 3)]
    except FileNotFoundError:
        continue
    first, cores = runs[0], {r["blas"]["core"] for r in runs}
    gflops = statistics.median(r["sgemm_gflops"] for r in runs)
    err = max(r["check"]["max_scaled_error"] for r in runs)
    ok, reason = all(r["check"]["ok"] for r in runs), ""
    if first["blas"]["library"] != "OpenBLAS":
        ok, reason = False, "the Debian torch does not run on OpenBLAS here (%s)" % first["kernel"]
    elif not ok:
        reason = "wrong results: max error %.2g (relative to |A||B|) > %.0e" % (err, first["check"]["tolerance"])
    elif name == "forced" and cores != {coretype}:
        ok, reason = False, "OpenBLAS did not apply it (it ran %s)" % "/".join(sorted(cores))
    elif name == "forced" and cores == {summary["default"]["core"]}:
        ok, reason = False, "it is OpenBLAS's own choice already"
    summary[name] = {"core": "/".join(sorted(cores)), "ok": ok,
                     "setting": "OPENBLAS_CORETYPE=" + coretype if name == "forced" else "default", "reason": reason, "max_scaled_error": err,
                     "tolerance": first["check"]["tolerance"], "sgemm_128_gflops": gflops,
                     "sgemm_128_gflops_runs": [r["sgemm_gflops"] for r in runs]}
    out[name + "_ok"], out[name + "_core"], out[name + "_reason"] = int(ok), summary[name]["core"], reason
    print("speed_vs_python: OpenBLAS %s (core %s): %s; 128 x 128 sgemm %.1f GFLOP/s (median of 3)"
          % (summary[name]["setting"], summary[name]["core"], "correct (max error %.1e)" % err if ok else "dropped: " + reason,
             gflops), file=sys.stderr)
kept = [n for n in summary if summary[n]["ok"]]
out["best"] = max(kept, key=lambda n: summary[n]["sgemm_128_gflops"]) if kept else ""
json.dump({"configs": summary, "best": out["best"]}, open(f"{tmp}/openblas.json", "w"))
for k, v in out.items():
    print("%s=%s" % (k, shlex.quote(str(v))))
PY
default_ok=0 forced_ok=0 best=""
# shellcheck source=/dev/null
source "$tmp/decisions.sh"
[ -n "$best" ] || die "no OpenBLAS configuration gives correct float32 products here (see above)"
ramflow_env=()
if [ "$best" = forced ]; then ramflow_env=("OPENBLAS_CORETYPE=$coretype"); fi
ramflow_core="OpenBLAS's default core"
if [ "$best" = forced ]; then ramflow_core="OPENBLAS_CORETYPE=$coretype"; fi
say "ramflow and ramflow --unfused run with $ramflow_core (the faster of the correct configurations)"

# What ramflow_bench's OpenBLAS runs under that environment (it links the library; blas_info asks it).
linked="$(ldd "$bench")" || die "ldd $bench failed"
openblas_lib="$(awk '/libopenblas/ && !found { print $3; found = 1 }' <<<"$linked")"
if [ -n "$openblas_lib" ]; then
  env "${ramflow_env[@]}" "$python" "$pydir/blas_info.py" --library "$openblas_lib" >"$tmp/ramflow_blas.json"
else
  echo '{"blas": {"library": "not OpenBLAS (see ldd)", "core": "?"}}' >"$tmp/ramflow_blas.json"
fi

# The Python peers: id, interpreter, environment (one VAR=VALUE or empty), label.
py_ids=() py_bin=() py_env=() py_label=()
add_peer() { py_ids+=("$1"); py_bin+=("$2"); py_env+=("$3"); py_label+=("$4"); }
if [ "$default_ok" = 1 ]; then add_peer py_debian "$python" "" "Python (Debian)"; fi
if [ "$forced_ok" = 1 ]; then add_peer py_debian_forced "$python" "OPENBLAS_CORETYPE=$coretype" "Python (Debian) $coretype"; fi
if [ "$pypi_torch" != 0 ]; then
  "$venv/bin/python" "$pydir/blas_info.py" --check --threads "$threads" >"$tmp/probe_pypi.json" ||
    die "blas_info.py failed under $venv/bin/python"
  pypi_error="$("$python" -c 'import json, sys; c = json.load(open(sys.argv[1]))["check"]
print("" if c["ok"] else "max error %.2g (relative to |A||B|) > %.0e" % (c["max_scaled_error"], c["tolerance"]))' \
    "$tmp/probe_pypi.json")"
  if [ -z "$pypi_error" ]; then
    add_peer py_pypi "$venv/bin/python" "" "Python (PyPI)"
  else
    say "leaving out the PyPI torch: wrong float32 products: $pypi_error"
  fi
fi
[ "${#py_ids[@]}" -gt 0 ] || die "no Python peer left to compare with"

n="${#py_ids[@]}"
for r in $(seq 1 "$rounds"); do
  quiet "ramflow_bench" env "${ramflow_env[@]}" "$bench" --ram-only --threads "$threads" --steps "$steps" \
    --json "$tmp/ramflow_$r.json"
  for k in $(seq 0 $((n - 1))); do
    i=$(((k + r - 1) % n))  # the Python peers' order rotates from round to round
    quiet "${py_label[$i]}" env ${py_env[$i]:+"${py_env[$i]}"} "${py_bin[$i]}" "$pydir/ram_step.py" \
      --threads "$threads" --steps "$steps" --json "$tmp/${py_ids[$i]}_$r.json"
  done
  quiet "ramflow_bench --unfused" env "${ramflow_env[@]}" "$bench" --ram-only --threads "$threads" --steps "$steps" \
    --unfused --json "$tmp/ramflow_unfused_$r.json"
  say "round $r/$rounds done"
done

peer_args=()
for i in "${!py_ids[@]}"; do peer_args+=("${py_ids[$i]}" "${py_label[$i]}" "${py_env[$i]}"); done
mkdir -p "$(dirname "$out")"
"$python" - "$tmp" "$rounds" "$steps" "$threads" "$out" "${ramflow_env[*]:-}" "${peer_args[@]}" <<'PY'
import json, statistics, sys
tmp, rounds, steps, threads, out, ramflow_env = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
py = [tuple(sys.argv[i:i + 3]) for i in range(7, len(sys.argv), 3)]  # (id, label, env)
runs = {p: [json.load(open(f"{tmp}/{p}_{r}.json")) for r in range(1, rounds + 1)]
        for p in ["ramflow", "ramflow_unfused"] + [i for i, _, _ in py]}
rf_blas = json.load(open(f"{tmp}/ramflow_blas.json"))["blas"]
env_note = " (%s)" % ramflow_env if ramflow_env else " (its default core)"
peers = {
    "ramflow": {"label": "ramflow", "torch": runs["ramflow"][0]["torch"] + " (LibTorch)", "env": ramflow_env,
                "kernel": "fused kernels; OpenBLAS %s loaded%s" % (rf_blas["core"], env_note), "blas": rf_blas},
    "ramflow_unfused": {"label": "ramflow --unfused", "torch": runs["ramflow_unfused"][0]["torch"] + " (LibTorch)",
                        "env": ramflow_env, "kernel": "%s %s%s" % (rf_blas["library"], rf_blas["core"], env_note),
                        "blas": rf_blas},
}
for pid, label, env in py:
    first = runs[pid][0]
    kernels = {r["kernel"] for r in runs[pid]}
    how = " (%s)" % env if env else " (its default core)" if first["blas"]["library"] == "OpenBLAS" else ""
    peers[pid] = {"label": label, "torch": first["torch"], "env": env, "blas": first["blas"],
                  "kernel": " / ".join(sorted(kernels)) + how,
                  "aten_cpu_capability": first.get("aten_cpu_capability"), "config": first.get("config")}
w = max(len(p["label"]) for p in peers.values()) + 2
print("RAM step on the ring, %d thread(s) (OpenBLAS, OpenMP and MKL pinned to %d), %d alternating rounds of %d steps"
      % (threads, threads, rounds, steps))
print("\n%-*s %-22s %s" % (w, "peer", "torch", "matrix products"))
for p in peers.values():
    print("%-*s %-22s %s" % (w, p["label"], p["torch"], p["kernel"]))
openblas = json.load(open(f"{tmp}/openblas.json"))
print("\nOpenBLAS checked with the Debian torch (float32 products against float64; 128 x 128 sgemm, median of 3):")
for name, c in openblas["configs"].items():
    print("  %-28s core %-11s %s, %.1f GFLOP/s%s" % (
        c["setting"], c["core"], "correct (max error %.1e)" % c["max_scaled_error"] if c["ok"] else "left out: " + c["reason"],
        c["sgemm_128_gflops"], "  <- ramflow runs with this one" if name == openblas["best"] else ""))
report = {"threads": threads, "rounds": rounds, "steps": steps, "peers": peers, "openblas_probe": openblas}
for key, title in (("ram_step_ms", "wall-clock"), ("ram_step_cpu_ms", "processor time")):
    vals = {p: [r["results"][0][key] for r in rs] for p, rs in runs.items()}
    med = {p: statistics.median(v) for p, v in vals.items()}
    print("\n%-*s %8s   %s" % (w, title + ", ms", "median", "rounds"))
    for p, v in vals.items():
        print("%-*s %8.3f   %s" % (w, peers[p]["label"], med[p], " ".join("%.2f" % x for x in v)))
    def speedup(peer, of):
        paired = [a / b for a, b in zip(vals[peer], vals[of])]
        return med[peer] / med[of], statistics.median(paired), paired
    best = min((i for i, _, _ in py), key=lambda i: med[i])
    s, sp, paired = speedup(best, "ramflow")
    u, up, _ = speedup(best, "ramflow_unfused")
    print("fastest Python peer: %s, torch %s, %s" % (peers[best]["label"], peers[best]["torch"], peers[best]["kernel"]))
    print("speed-up of ramflow over it: %.2fx (ratio of medians), %.2fx (median of per-round ratios: %s); "
          "ramflow --unfused: %.2fx, %.2fx" % (s, sp, " ".join("%.2f" % x for x in paired), u, up))
    by_peer = {}
    for i, label, _ in py:
        a, b, _ = speedup(i, "ramflow")
        c, d, _ = speedup(i, "ramflow_unfused")
        by_peer[i] = {"ratio_of_medians": a, "paired_median": b, "unfused_ratio_of_medians": c, "unfused_paired_median": d}
    print("over each Python peer (ratio of medians / median of per-round ratios): " + "; ".join(
        "%s %.2fx / %.2fx" % (peers[i]["label"], by_peer[i]["ratio_of_medians"], by_peer[i]["paired_median"]) for i, _, _ in py))
    report[key] = {"rounds": vals, "median_ms": med, "best_python": best, "speedup": s, "speedup_paired_median": sp,
                   "speedup_unfused": u, "speedup_unfused_paired_median": up, "speedup_by_python_peer": by_peer}
json.dump(report, open(out, "w"), indent=2)
print("\nwritten to %s" % out)
PY
