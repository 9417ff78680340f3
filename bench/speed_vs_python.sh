#!/usr/bin/env bash
# RAM step: ramflow against the same loop in Python + PyTorch (bench/python/ram_step.py), on THREADS
# threads (default 1; "all" for every core).
# The two run in alternation, ROUNDS times (default 5), so that load from other processes on the machine
# hits both alike; the medians and their ratios, by wall-clock and by processor time (which excludes time
# stolen by other virtual machines on a shared host), are printed and written to $OUT (default
# build/speed_vs_python.json). Also times ramflow with the fused kernels off (--unfused), to show what
# they contribute. Needs build/ramflow_bench and a python3 with torch (PYTHON, default /usr/bin/python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="${RAMFLOW_BUILD_DIR:-$root/build}/ramflow_bench"
python="${PYTHON:-/usr/bin/python3}"
rounds="${ROUNDS:-5}"
threads="${THREADS:-1}"
[ "$threads" = all ] && threads="$(nproc)"
steps="${STEPS:-300}"
out="${OUT:-${RAMFLOW_BUILD_DIR:-$root/build}/speed_vs_python.json}"
[ -x "$bench" ] || { echo "speed_vs_python: $bench not found (build with scripts/build)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null || { echo "speed_vs_python: $python has no torch (apt-get install python3-torch)" >&2; exit 1; }
# One thread means one: torch.set_num_threads(1) does not reach OpenBLAS's own thread pool (Debian's
# LibTorch calls BLAS generically), which otherwise spins a second core inside every matrix product.
[ "$threads" = 1 ] && export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  "$bench" --ram-only --threads "$threads" --steps "$steps" --json "$tmp/fused_$r.json" >/dev/null
  "$python" "$root/bench/python/ram_step.py" --threads "$threads" --steps "$steps" --json "$tmp/python_$r.json" >/dev/null
  "$bench" --ram-only --threads "$threads" --steps "$steps" --unfused --json "$tmp/unfused_$r.json" >/dev/null
  echo "round $r/$rounds done" >&2
done
"$python" - "$tmp" "$rounds" "$out" "$threads" <<'PY'
import json, statistics, sys
tmp, rounds, out, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def load(kind, key):
    return [json.load(open(f"{tmp}/{kind}_{r}.json"))["results"][0][key] for r in range(1, rounds + 1)]
report = {}
print("RAM step on the ring, %d thread(s), medians of %d alternating rounds (ms per step)" % (threads, rounds))
for key, title in (("ram_step_ms", "wall-clock"), ("ram_step_cpu_ms", "processor time")):
    runs = {k: load(k, key) for k in ("fused", "unfused", "python")}
    med = {k: statistics.median(v) for k, v in runs.items()}
    print("\n%s\n%-28s %8s   %s" % (title, "", "median", "rounds"))
    for k, label in (("fused", "ramflow"), ("unfused", "ramflow --unfused"), ("python", "Python + PyTorch")):
        print("%-28s %8.3f   %s" % (label, med[k], " ".join("%.2f" % x for x in runs[k])))
    ratio = med["python"] / med["fused"]
    # Each round's Python run sits between its two ramflow runs, so the per-round ratio compares runs
    # made under the same load; its median is the steadier estimate on a noisy host.
    paired = [p / f for p, f in zip(runs["python"], runs["fused"])]
    print("speed-up over Python: %.2fx (unfused: %.2fx); median of the per-round ratios %.2fx (rounds: %s)"
          % (ratio, med["python"] / med["unfused"], statistics.median(paired),
             " ".join("%.2f" % x for x in paired)))
    report[key] = {"rounds": runs, "median_ms": med, "speedup": ratio,
                   "speedup_unfused": med["python"] / med["unfused"],
                   "speedup_paired_median": statistics.median(paired)}
report["threads"] = threads
json.dump(report, open(out, "w"), indent=2)
PY
