#!/usr/bin/env bash
# Data-parallel speed (docs/distributed.md): steps per second of `ramflow finetune` as one process and as
# `ramflow launch --nproc 2` (one thread per process: 2 cores either way for 2 processes, 1 for one), on the
# fashion and words tasks with the same global batch, in alternation (the order rotates from round to
# round: this machine's speed drifts). Prints, per task, each configuration's median milliseconds per
# step (the trainer's own seconds: rollout, reward, loss, backward, update and, with 2, the collectives),
# the speed-up of 2 processes over 1 (goal: 1.8x on 2 cores) and the collectives' share of a 2-process
# step (comm_seconds of metrics.jsonl); writes it all to OUT as JSON.
#
# Environment:
#   ROUNDS  alternating rounds (default 3)     TASKS  tasks (default "fashion words")
#   STEPS_fashion, STEPS_words  steps per run (default 12 and 6)
#   OUT     JSON report (default $RAMFLOW_BUILD_DIR/distributed.json)
#   RAMFLOW_BUILD_DIR  where ramflow is (default build)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RAMFLOW_BUILD_DIR:-$root/build}"
cli="$build/ramflow"
rounds="${ROUNDS:-3}"
tasks="${TASKS:-fashion words}"
out="${OUT:-$build/distributed.json}"
die() { echo "distributed: $*" >&2; exit 1; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number, not '$rounds'"
[ -x "$cli" ] || die "$cli not found (build with scripts/build, or set RAMFLOW_BUILD_DIR)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# run TASK NPROC ROUND: one run's median step and collectives' seconds, as "ms comm_ms"
run() {
  local task="$1" n="$2" dir="$work/$1-$2-$3" steps_var="STEPS_$1"
  local steps="${!steps_var:-$([ "$1" = words ] && echo 6 || echo 12)}"
  local args=(finetune --task "$task" --steps "$steps" --eval none --threads 1 --out "$dir")
  if [ "$n" = 1 ]; then "$cli" "${args[@]}" >/dev/null 2>"$dir.log"
  else "$cli" launch --nproc "$n" "${args[@]}" >/dev/null 2>"$dir.log"; fi ||
    { cat "$dir.log" >&2; die "$task with $n process(es) failed"; }
  python3 - "$dir/metrics.jsonl" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
# Step times from the cumulative seconds; the first step (warm-up) left out.
t = [b["seconds"] - a["seconds"] for a, b in zip(lines, lines[1:])]
comm = [l.get("comm_seconds", 0.0) for l in lines[1:]]
print(f"{1000 * statistics.median(t):.1f} {1000 * statistics.median(comm):.1f}")
PY
}

echo "{" > "$out"
first_task=1
for task in $tasks; do
  declare -a one=() two=() comm=()
  for ((r = 0; r < rounds; r++)); do
    for n in $([ $((r % 2)) = 0 ] && echo "1 2" || echo "2 1"); do
      read -r ms cms < <(run "$task" "$n" "$r")
      echo "distributed: $task, $n process(es), round $((r + 1)): $ms ms/step (collectives $cms ms)"
      if [ "$n" = 1 ]; then one+=("$ms"); else two+=("$ms"); comm+=("$cms"); fi
    done
  done
  summary="$(python3 - "${one[*]}" "${two[*]}" "${comm[*]}" <<'PY'
import statistics, sys
one, two, comm = ([float(x) for x in a.split()] for a in sys.argv[1:4])
m1, m2, mc = statistics.median(one), statistics.median(two), statistics.median(comm)
print(f"{m1:.1f} {m2:.1f} {m1 / m2:.2f} {100 * mc / m2:.1f}")
PY
)"
  read -r m1 m2 speedup share <<< "$summary"
  echo "distributed: $task: 1 process $m1 ms/step, 2 processes $m2 ms/step: ${speedup}x; collectives ${share}% of a 2-process step"
  [ $first_task = 1 ] || echo "," >> "$out"
  first_task=0
  printf '  "%s": {"ms_per_step_1": %s, "ms_per_step_2": %s, "speedup": %s, "comm_share_percent": %s, "rounds": %s}' \
    "$task" "$m1" "$m2" "$speedup" "$share" "$rounds" >> "$out"
done
printf '\n}\n' >> "$out"
echo "distributed: written $out"
