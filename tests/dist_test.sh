#!/usr/bin/env bash
# Data-parallel runs of the command-line tool (docs/distributed.md). Usage: dist_test.sh RAMFLOW_BINARY
#  1. `ramflow launch --nproc 2 finetune` equals `ramflow finetune` with the same global batch, for RAM,
#     Flow-GRPO and DiffusionNFT: every number of metrics.jsonl (but wall-clock seconds) within 1e-5
#     relative; rank 0 alone wrote.
#  2. A 2-process run resumed from its checkpoint equals the straight 2-process run, and a resume on one
#     process continues it too (the world size does not enter the numbers).
#  3. kill -9 of rank 1: rank 0 exits non-zero within a bounded time, naming the lost rank.
#  4. SIGTERM to rank 1 alone: every rank stops after the same step, one checkpoint, exit 143; resumed,
#     the run equals the straight one.
#  5. A subcommand other than finetune under WORLD_SIZE=2 is refused before any compute.
#  6. Two independent runs started at once on an empty base-model cache both pretrain and cache it
#     (atomic writes): both succeed with the same base.
# Exits non-zero on any failure.
set -euo pipefail
cli="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RAMFLOW_CACHE_DIR="$work/cache"
fail() { echo "dist_test: $*" >&2; exit 1; }
common=(--task ring --model '{"type": "mlp", "dim": 2, "hidden": 16}' --pretrain-steps 100 --groups 4
        --group-size 8 --rollout-steps 4 --eval-every 2 --eval-samples 64 --eval-pool 256
        --eval-curve-samples 64 --eval-steps 4 --eval-kl-samples 8 --eval-kl-steps 4 --threads 1)

# The numbers of two runs' metrics.jsonl within 1e-5 relative (tests/same_metrics.py).
same_metrics() { python3 "$(dirname "$0")/same_metrics.py" "$1" "$2"; }

# 1. Two processes against one.
for method in flow-grpo nft ram; do
  "$cli" finetune "${common[@]}" --method "$method" --steps 4 --out "$work/one" --overwrite \
    >/dev/null 2>"$work/one.log" || { cat "$work/one.log" >&2; fail "the one-process $method run failed"; }
  "$cli" launch --nproc 2 finetune "${common[@]}" --method "$method" --steps 4 --out "$work/two" \
    --overwrite >"$work/two.out" 2>"$work/two.log" ||
    { cat "$work/two.log" >&2; fail "the 2-process $method run failed"; }
  same_metrics "$work/one" "$work/two" || fail "$method: 2 processes differ from 1"
done
grep -q '"processes": 2' "$work/two/summary.json" || fail "summary.json does not say 2 processes"
[ -f "$work/two/report.html" ] && [ -f "$work/two/checkpoints/final.safetensors" ] || fail "rank 0 did not write the run"
grep -q "run directory: $work/two" "$work/two.out" || fail "the results (rank 0's) are not on stdout"

# 2. Resumed 2-process run = straight 2-process run; and one process can continue it.
"$cli" launch --nproc 2 finetune "${common[@]}" --steps 2 --out "$work/half" >/dev/null 2>"$work/half.log" ||
  { cat "$work/half.log" >&2; fail "the first half failed"; }
cp -r "$work/half" "$work/half1"
"$cli" launch --nproc 2 finetune --resume "$work/half" --steps 4 >/dev/null 2>"$work/resume.log" ||
  { cat "$work/resume.log" >&2; fail "the 2-process resume failed"; }
same_metrics "$work/two" "$work/half" || fail "the resumed 2-process run differs from the straight one"
"$cli" finetune --resume "$work/half1" --steps 4 >/dev/null 2>"$work/resume1.log" ||
  { cat "$work/resume1.log" >&2; fail "the 1-process resume failed"; }
same_metrics "$work/two" "$work/half1" || fail "a 2-process run resumed on one process differs"

# 3. kill -9 of rank 1 in the middle of training.
"$cli" launch --nproc 2 finetune "${common[@]}" --steps 100000 --eval none --out "$work/killed" \
  >/dev/null 2>"$work/killed.log" &
launcher=$!
for _ in $(seq 600); do
  [ -s "$work/killed/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$work/killed/metrics.jsonl" ] || { kill -9 $launcher; fail "the run never started training"; }
rank1="$(pgrep -P $launcher | sed -n 2p)"
[ -n "$rank1" ] || fail "no rank 1 process"
kill -9 "$rank1"
SECONDS=0
status=0
wait $launcher || status=$?
[ "$status" -ne 0 ] || fail "the run went on after rank 1 was killed"
[ "$SECONDS" -le 60 ] || fail "rank 0 took ${SECONDS} s to end"
grep -q "lost rank 1" "$work/killed.log" || { cat "$work/killed.log" >&2; fail "no message naming rank 1"; }
grep -q "rank 1 was killed by signal 9" "$work/killed.log" || fail "ramflow launch did not report rank 1"

# 4. SIGTERM to rank 1 alone, after its second step: both ranks stop after the same step.
"$cli" launch --nproc 2 finetune "${common[@]}" --steps 100000 --eval none --out "$work/termed" \
  >/dev/null 2>"$work/termed.log" &
launcher=$!
for _ in $(seq 600); do
  [ "$(grep -c '"step"' "$work/termed/metrics.jsonl" 2>/dev/null)" -ge 2 ] && break
  sleep 0.1
done
kill -TERM "$(pgrep -P $launcher | sed -n 2p)"
status=0
wait $launcher || status=$?
[ "$status" -eq 143 ] || { cat "$work/termed.log" >&2; fail "SIGTERM to rank 1: exit $status, not 143"; }
grep -q "SIGTERM: stopped after step" "$work/termed.log" || fail "rank 0 did not say where it stopped"
ls "$work/termed/checkpoints/" | grep -q '^step-' || fail "no checkpoint after the stop"
at="$(grep -c '"step"' "$work/termed/metrics.jsonl")"
"$cli" finetune "${common[@]}" --steps $((at + 2)) --eval none --out "$work/straight" >/dev/null 2>&1 ||
  fail "the straight run failed"
"$cli" launch --nproc 2 finetune --resume "$work/termed" --steps $((at + 2)) >/dev/null 2>"$work/termed2.log" ||
  { cat "$work/termed2.log" >&2; fail "resuming the stopped run failed"; }
same_metrics "$work/straight" "$work/termed" || fail "the stopped and resumed run differs from the straight one"

# 5. Only finetune runs on several processes.
if RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$cli" sample --checkpoint "$work/one/checkpoints/final.safetensors" \
    --out "$work/s.csv" 2>"$work/sample.log"; then
  fail "sample ran under WORLD_SIZE=2"
fi
grep -q "only finetune runs on several processes" "$work/sample.log" || { cat "$work/sample.log" >&2; fail "no clear refusal"; }
# 6. Two runs at once on an empty cache.
export RAMFLOW_CACHE_DIR="$work/cache2"
"$cli" finetune "${common[@]}" --steps 2 --out "$work/c1" >/dev/null 2>"$work/c1.log" &
first=$!
"$cli" finetune "${common[@]}" --steps 2 --out "$work/c2" >/dev/null 2>"$work/c2.log" || fail "a concurrent run failed"
wait $first || fail "a concurrent run failed"
[ "$(ls "$work/cache2" | grep -c '^base-.*safetensors$')" -eq 1 ] || fail "the cache holds not one base model"
same_metrics "$work/c1" "$work/c2" || fail "the concurrent runs' bases differ"
echo "dist_test: every check passed"
