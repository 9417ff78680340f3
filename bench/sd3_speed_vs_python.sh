#!/usr/bin/env bash
# The RAM step with LoRA on a small SD3.5-shaped model: ramflow (ramflow_sd3_bench --size small)
# against the same step in Python with diffusers' SD3Transformer2DModel and PEFT
# (bench/python/sd3_ram_step.py), alternating, ROUNDS times each, on the same machine and thread
# count. Prints each run's JSON line, then the medians of seconds per step and the peak memory.
#   BUILD    the build with ramflow_sd3_bench (default build-pypi, the LibTorch of the same PyTorch)
#   VENV     the virtual environment with PyPI's torch, diffusers and peft (default bench/.venv)
#   ROUNDS   alternations (default 3); STEPS timed steps per run (default 2); THREADS (default 2)
#   PEER_ARGS extra arguments of the Python peer (e.g. --compile)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD:-$root/build-pypi}"
venv="${VENV:-$root/bench/.venv}"
rounds="${ROUNDS:-3}" steps="${STEPS:-2}" threads="${THREADS:-2}"
[ -x "$build/ramflow_sd3_bench" ] || { echo "sd3_speed_vs_python.sh: no $build/ramflow_sd3_bench (build it)" >&2; exit 2; }
"$venv/bin/python" -c "import torch, diffusers, peft" 2>/dev/null ||
  { echo "sd3_speed_vs_python.sh: $venv lacks torch, diffusers or peft (tests/fixtures/sd3/generate.sh installs them)" >&2; exit 2; }
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((i = 1; i <= rounds; i++)); do
  "$build/ramflow_sd3_bench" --size small --steps "$steps" --threads "$threads" | sed 's/^/ramflow /' | tee -a "$out"
  "$venv/bin/python" "$root/bench/python/sd3_ram_step.py" --steps "$steps" --threads "$threads" ${PEER_ARGS:-} 2>/dev/null |
    sed 's/^/python /' | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {"ramflow": [], "python": []}
for line in open(sys.argv[1]):
    who, text = line.split(" ", 1)
    runs[who].append(json.loads(text))
med = {w: {k: statistics.median(r[k] for r in rs) for k in ("seconds_per_step", "rollout_seconds",
       "decode_and_reward_seconds", "loss_and_update_seconds", "peak_rss_gb")} for w, rs in runs.items()}
for w, m in med.items():
    print(f"{w:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
print(f"speed-up (python / ramflow, seconds per step): {med['python']['seconds_per_step'] / med['ramflow']['seconds_per_step']:.2f}x")
PY
