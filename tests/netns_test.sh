#!/usr/bin/env bash
# Two "machines": one data-parallel run over two network namespaces joined by a veth pair, one process
# in each, MASTER_ADDR the first namespace's address; its metrics equal the one-process run's
# (tests/same_metrics.py). Usage: netns_test.sh RAMFLOW_BINARY. Exits 77 (skipped) where namespaces
# cannot be made (not root, or no CAP_SYS_ADMIN), non-zero on any failure.
set -euo pipefail
cli="$(readlink -f "$1")"
work="$(mktemp -d)"
a="ramflow-a-$$" b="ramflow-b-$$" va="rfa$$" vb="rfb$$"
cleanup() {
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
if ! ip netns add "$a" 2>/dev/null; then
  echo "netns_test: skipped: cannot make a network namespace here (needs root or CAP_SYS_ADMIN)"
  exit 77
fi
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
ip -n "$a" addr add 10.213.0.1/24 dev "$va"
ip -n "$b" addr add 10.213.0.2/24 dev "$vb"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" up
ip -n "$b" link set "$vb" up
fail() { echo "netns_test: $*" >&2; exit 1; }
export RAMFLOW_CACHE_DIR="$work/cache"
common=(--task ring --model '{"type": "mlp", "dim": 2, "hidden": 16}' --pretrain-steps 100 --groups 4
        --group-size 8 --rollout-steps 4 --steps 4 --eval-every 2 --eval-samples 64 --eval-pool 256
        --eval-curve-samples 64 --eval-steps 4 --eval-kl-samples 8 --eval-kl-steps 4 --threads 1)
"$cli" finetune "${common[@]}" --out "$work/one" >/dev/null 2>"$work/one.log" ||
  { cat "$work/one.log" >&2; fail "the one-process run failed"; }
rendezvous=(WORLD_SIZE=2 MASTER_ADDR=10.213.0.1 MASTER_PORT=29517)
ip netns exec "$a" env RANK=0 "${rendezvous[@]}" "$cli" finetune "${common[@]}" --out "$work/two" \
  >/dev/null 2>"$work/rank0.log" &
first=$!
status=0
ip netns exec "$b" env RANK=1 "${rendezvous[@]}" "$cli" finetune "${common[@]}" --out "$work/two" \
  >/dev/null 2>"$work/rank1.log" || status=$?
wait $first || status=$?
[ "$status" -eq 0 ] || { cat "$work/rank0.log" "$work/rank1.log" >&2; fail "the 2-namespace run failed"; }
python3 "$(dirname "$0")/same_metrics.py" "$work/one" "$work/two" ||
  fail "the run over two namespaces differs from one process"
echo "netns_test: the run over two network namespaces equals the one-process run"
