#!/usr/bin/env bash
# The image RAM step (fashion preset): ramflow (build/ramflow_image_bench) against the same loop in Python
# + PyTorch (bench/python/image_ram_step.py) under Debian's torch and under the newest torch from PyPI, in
# alternation (the order of the peers rotates from round to round), on THREADS threads each. Prints each
# peer's median milliseconds per step with its phases (rollout, reward, loss + backward + AdamW) and the
# speed-up of ramflow over the fastest Python peer; writes it all to OUT as JSON.
#
# Environment:
#   THREADS  threads for every peer (default 2); OpenBLAS, OpenMP and MKL are pinned to it as well
#   ROUNDS   alternating rounds (default 3)        STEPS  steps timed per run (default 5)
#   OUT      JSON report (default $RAMFLOW_BUILD_DIR/image_speed_vs_python.json)
#   RAMFLOW_BUILD_DIR  where ramflow_image_bench is (default build)
#   PYTHON   interpreter of the Debian peer (default /usr/bin/python3, with python3-torch)
#   PYPI_TORCH  0: leave out the PyPI peer; else its virtual environment VENV (default bench/.venv) must
#            exist (bench/speed_vs_python.sh makes it)
#   OPENBLAS_CORETYPE  applies to ramflow and Debian's torch alike (they share Debian's OpenBLAS); each run
#            prints the kernel it used
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RAMFLOW_BUILD_DIR:-$root/build}"
bench="$build/ramflow_image_bench"
python="${PYTHON:-/usr/bin/python3}"
venv="${VENV:-$root/bench/.venv}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
steps="${STEPS:-5}"
out="${OUT:-$build/image_speed_vs_python.json}"
die() { echo "image_speed_vs_python: $*" >&2; exit 1; }
for v in rounds steps threads; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a positive whole number, not '${!v}'"
done
[ -x "$bench" ] || die "$bench not found (build with scripts/build, or set RAMFLOW_BUILD_DIR)"
"$python" -c "import torch" 2>/dev/null || die "$python has no torch (Debian: apt-get install python3-torch)"
peers=(ramflow debian)
if [ "${PYPI_TORCH:-1}" != 0 ]; then
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" 2>/dev/null ||
    die "no PyPI torch in $venv (run bench/speed_vs_python.sh once, or PYPI_TORCH=0)"
  peers+=(pypi)
fi
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
run_peer() {  # peer round
  local json="$tmp/$1.$2.json"
  case "$1" in
    ramflow) "$bench" --steps "$steps" --threads "$threads" --json "$json" ;;
    debian) "$python" "$root/bench/python/image_ram_step.py" --steps "$steps" --threads "$threads" --json "$json" ;;
    pypi) "$venv/bin/python" "$root/bench/python/image_ram_step.py" --steps "$steps" --threads "$threads" --json "$json" ;;
  esac
}
n=${#peers[@]}
for ((r = 0; r < rounds; r++)); do
  echo "round $((r + 1))/$rounds" >&2
  for ((i = 0; i < n; i++)); do
    peer="${peers[$(((i + r) % n))]}"
    run_peer "$peer" "$r" | sed "s/^/  [$peer] /" >&2
  done
done
"$python" - "$tmp" "$out" "$threads" "$steps" "$rounds" "$build" <<'EOF'
import glob, json, os, statistics, sys
tmp, out, threads, steps, rounds, build = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
runs = {}
for path in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    peer = os.path.basename(path).split(".")[0]
    runs.setdefault(peer, []).append(json.load(open(path)))
label = {"ramflow": "ramflow", "debian": "Python, Debian's torch", "pypi": "Python, PyPI's torch"}
report = {"threads": threads, "steps": steps, "rounds": rounds, "peers": {}}
print(f"image RAM step, fashion preset, {threads} threads, median of {rounds} rounds x {steps} steps")
print(f"{'peer':<26}{'ms/step':>9}{'rollout':>9}{'reward':>8}{'loss+upd':>10}  kernel")
for peer in ("ramflow", "debian", "pypi"):
    if peer not in runs:
        continue
    med = {k: statistics.median(r[k] for r in runs[peer])
           for k in ("step_ms", "rollout_ms", "reward_ms", "loss_update_ms")}
    kernel = runs[peer][0].get("kernel", "the LibTorch " + os.path.basename(build) + "/ was built against")
    version = runs[peer][0].get("torch", "")
    report["peers"][peer] = {**med, "rounds": [r["step_ms"] for r in runs[peer]], "kernel": kernel, "torch": version}
    print(f"{label[peer] + (' ' + version if version else ''):<26}{med['step_ms']:9.1f}{med['rollout_ms']:9.1f}"
          f"{med['reward_ms']:8.1f}{med['loss_update_ms']:10.1f}  {kernel}")
pythons = [p for p in ("debian", "pypi") if p in report["peers"]]
best = min(pythons, key=lambda p: report["peers"][p]["step_ms"])
ratio = report["peers"][best]["step_ms"] / report["peers"]["ramflow"]["step_ms"]
report["fastest_python"], report["speedup"] = best, ratio
print(f"ramflow speed-up over the fastest Python peer ({label[best]}): {ratio:.2f}x")
with open(out, "w") as f:
    json.dump(report, f, indent=2)
EOF
