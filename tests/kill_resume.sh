#!/usr/bin/env bash
# A real run stopped by force and resumed. Usage: kill_resume.sh RAMFLOW_BINARY
#  1. SIGKILL at random moments of training, three times: after each kill the newest checkpoint loads (`ramflow sample`
#     reads it) and the run resumes from it; the finished run equals a straight run of the same length:
#     metrics.jsonl line for line (but wall-clock seconds) and the last checkpoint's tensors byte for byte.
#  2. SIGINT: the run finishes its step, writes a checkpoint, says how to continue and exits with 130; the
#     continued run equals the straight one too.
# Exits non-zero on any failure.
set -euo pipefail
cli="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RAMFLOW_CACHE_DIR="$work/cache"
steps=1500
common=(--model '{"type": "mlp", "dim": 2, "hidden": 16}' --pretrain-steps 100 --steps "$steps" --group-size 8
        --rollout-steps 4 --eval-every 250 --eval-samples 40 --eval-pool 200 --eval-curve-samples 40
        --eval-steps 4 --eval-kl-samples 4 --eval-kl-steps 4 --checkpoint-every 1 --keep-checkpoints 2
        --threads 1)
fail() { echo "kill_resume: $*" >&2; exit 1; }

SECONDS=0
"$cli" finetune --out "$work/straight" "${common[@]}" 2>"$work/straight.log" || fail "the straight run failed"
echo "straight run: about ${SECONDS} s"

# Same metrics (but seconds) and the same tensors (the data section after the header) as the straight run.
same_as_straight() {
  python3 - "$work/straight" "$1" "$steps" <<'EOF'
import json, struct, sys
a, b, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
def metrics(run):
    out = []
    for line in open(run + "/metrics.jsonl"):
        j = json.loads(line)
        j.pop("seconds", None)
        out.append(j)
    return out
ma, mb = metrics(a), metrics(b)
if ma != mb:
    bad = next(i for i in range(min(len(ma), len(mb))) if ma[i] != mb[i]) if len(ma) == len(mb) else "count"
    sys.exit(f"metrics differ ({len(ma)} vs {len(mb)} lines; first difference: {bad})")
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return header, raw[8 + n:]
name = f"/checkpoints/step-{steps:08d}.safetensors"
if tensors(a + name) != tensors(b + name):
    sys.exit("the last checkpoints' tensors differ")
print(f"{len(ma)} metrics lines and every tensor of {name[1:]} equal")
EOF
}

# 1. SIGKILL at random moments of training: each start (fresh, then resumed) is killed a random few
#    milliseconds after it has written a checkpoint of its own, so that every kill lands mid-training
#    whatever the machine's speed.
run="$work/killed"
kills=0
for attempt in 1 2 3; do
  before=""
  if [ -f "$run/checkpoints/latest" ]; then
    before="$(cat "$run/checkpoints/latest")"
    "$cli" finetune --resume "$run" 2>"$work/run.log" &
  else
    rm -rf "$run"
    "$cli" finetune --out "$run" "${common[@]}" 2>"$work/run.log" &
  fi
  pid=$!
  for _ in $(seq 1200); do
    now="$(cat "$run/checkpoints/latest" 2>/dev/null || true)"
    { [ -n "$now" ] && [ "$now" != "$before" ]; } && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  delay="0.0$((RANDOM % 9 + 1))"
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    kills=$((kills + 1))
    [ -f "$run/checkpoints/latest" ] || fail "killed without any checkpoint written"
    latest="$run/checkpoints/$(cat "$run/checkpoints/latest")"
    "$cli" sample --checkpoint "$latest" --n 4 --steps 2 --out "$work/s.npy" 2>/dev/null ||
      fail "after the kill, $latest does not load"
    echo "killed ${delay} s after ${now:-no new checkpoint}; $(basename "$latest") loads"
  else
    wait "$pid" || fail "the run failed: $(tail -1 "$work/run.log")"
    echo "the run ended before the kill"
    break
  fi
done
[ "$kills" -ge 1 ] || fail "no kill landed while the run was going"
if [ ! -f "$run/summary.json" ]; then
  "$cli" finetune --resume "$run" 2>"$work/run.log" || fail "the last resume failed: $(tail -1 "$work/run.log")"
fi
same_as_straight "$run" || fail "the killed and resumed run differs from the straight run"

# 2. SIGINT: a graceful stop with a checkpoint and the way to continue.
run="$work/interrupted"
"$cli" finetune --out "$run" "${common[@]}" 2>"$work/int.log" &
pid=$!
for _ in $(seq 1200); do [ -f "$run/checkpoints/latest" ] && break; sleep 0.05; done
[ -f "$run/checkpoints/latest" ] || fail "SIGINT: no checkpoint within a minute"
kill -INT "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 130 ] || fail "SIGINT: exit status $status, expected 130 ($(tail -1 "$work/int.log"))"
grep -q "continue with: ramflow finetune --resume $run" "$work/int.log" || fail "SIGINT: no resume hint: $(tail -1 "$work/int.log")"
echo "SIGINT: $(tail -1 "$work/int.log")"
"$cli" finetune --resume "$run" 2>"$work/int.log" || fail "resume after SIGINT failed"
same_as_straight "$run" || fail "the interrupted and resumed run differs from the straight run"
echo "kill_resume: ok ($kills kills)"
