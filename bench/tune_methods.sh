#!/usr/bin/env bash
# The learning-rate sweep behind each method's preset on the ring task (bump reward at (4, 0), m = 5,
# 600 steps, G = 32). Each (method, lr) runs `ramflow compare` over SEEDS seeds; the criterion is the
# final energy distance to the exact target p* ∝ p_base exp(m r), mean over seeds (lower is better):
# the method that ends closest to the KL-optimal distribution wins, whatever its reward.
#
#   bash bench/tune_methods.sh                      # all methods, lr in 1e-4 3e-4 1e-3 3e-3
#   METHODS="ram nft" LRS="1e-4 1e-3" SEEDS=2 OUT=/tmp/tune bash bench/tune_methods.sh
#
# Prints a markdown table (and writes OUT/tuning.md); every run directory stays under OUT.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
RAMFLOW=${RAMFLOW:-$here/build/ramflow}
METHODS=${METHODS:-"ram flow-grpo adjoint-matching nft draft"}
LRS=${LRS:-"1e-4 3e-4 1e-3 3e-3"}
SEEDS=${SEEDS:-2}
STEPS=${STEPS:-600}
OUT=${OUT:-runs/tune}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
for m in $METHODS; do
  for lr in $LRS; do
    dir="$OUT/$m-lr$lr"
    [ -f "$dir/summary.json" ] && continue  # resume a partial sweep
    echo "tuning $m lr=$lr" >&2
    # shellcheck disable=SC2086
    "$RAMFLOW" compare --methods "$m" --lr "$lr" --seeds "$SEEDS" --steps "$STEPS" --target-reward 0.8 \
      --out "$dir" --overwrite $EXTRA > "$dir.log" 2>&1
  done
done
python3 - "$OUT" "$METHODS" "$LRS" <<'PY' | tee "$OUT/tuning.md"
import json, sys
out, methods, lrs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def f(s, d=3):
    return "-" if s["mean"] is None else f"{s['mean']:.{d}f} ± {s['std']:.{d}f}"
print("| method | lr | final reward | fraction of optimal | distance to p* | diversity | steps to 0.8 | ms/step |")
print("|---|---|---|---|---|---|---|---|")
best = {}
for m in methods:
    for lr in lrs:
        r = json.load(open(f"{out}/{m}-lr{lr}/report.json"))
        s = r["methods"][m]
        d = s["distance_final"]["mean"]
        if m not in best or d < best[m][1]:
            best[m] = (lr, d)
        print(f"| {m} | {lr} | {f(s['reward_final'])} | {f(s['fraction_of_optimal'])} | {f(s['distance_final'])} "
              f"| {f(s['diversity_final'])} | {f(s['steps_to_target'], 0)} ({s['reached_target']}/{s['runs']}) "
              f"| {f(s['ms_per_step'], 2)} |")
print()
print("exact target: reward_optimal %.3f, diversity %.3f; base reward %.3f" % (r["reward_optimal"], r["target_diversity"], r["reward_base"]))
print()
for m, (lr, d) in best.items():
    print(f"- {m}: lr {lr} (distance {d:.3f})")
PY
