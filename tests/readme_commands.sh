#!/usr/bin/env bash
# Runs every `ramflow` command of the README's ```sh blocks, as written, with a few steps: the commands a
# new user copies must work. Usage: readme_commands.sh CLI README
#
# Each command keeps its own flags; only the amount of work shrinks. Flags that set the amount of work
# (--steps, --seeds, the evaluation sizes, --pretrain-steps) are replaced by small values, and paths under
# runs/ are moved into a temporary directory, so that commands that read what an earlier one wrote
# (--config runs/first/config.json) find it. Lines that are not ramflow commands (scripts/run,
# scripts/test, the benchmarks) are left out; a --resume command gets no work-size flag but --steps 5: the test suite is itself scripts/test, and the benchmarks
# need a prepared environment. Exits 1 naming every command that failed.
set -euo pipefail
cli="$1"
readme="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export RAMFLOW_CACHE_DIR="$tmp/cache"

# Commands of the ```sh blocks, continuation lines joined.
mapfile -t commands < <(awk '
  /^```sh/ { inside = 1; next }
  /^```/   { inside = 0; next }
  inside {
    line = line $0
    if (line ~ /\\$/) { sub(/\\$/, "", line); next }
    print line; line = ""
  }' "$readme" | grep -E '^ramflow ' || true)
[ "${#commands[@]}" -gt 0 ] || { echo "readme_commands: no ramflow commands found in $readme" >&2; exit 1; }

# Work-size flags: replaced wherever the command has them, added where the subcommand takes them.
declare -A small=(
  [--steps]=3 [--seeds]=1 [--eval-every]=3 [--eval-samples]=100 [--eval-curve-samples]=100
  [--eval-pool]=2000 [--eval-kl-samples]=8 [--eval-kl-steps]=4 [--pretrain-steps]=200
)
# Commands that score on the example reward server (--reward-url http://127.0.0.1:8000/) get one of
# their own, on a free port.
server=""
if printf '%s\n' "${commands[@]}" | grep -q -- "--reward-url http://127.0.0.1:8000/"; then
  python3 "$(dirname "$readme")/examples/reward_server.py" --port 0 >"$tmp/server.url" 2>/dev/null &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 100); do [ -s "$tmp/server.url" ] && break; sleep 0.1; done
  server="$(head -1 "$tmp/server.url")"
fi
failed=0
for command in "${commands[@]}"; do
  [ -n "$server" ] && command="${command//http:\/\/127.0.0.1:8000\//$server}"
  eval "set -- $command"  # the shell's own word splitting and quoting; drops a trailing # comment
  shift                   # "ramflow"
  sub="$1"
  shift
  help="$("$cli" "$sub" --help)"
  args=("$sub")
  # A resumed run keeps its configuration: it takes no work-size flag but --steps, which runs it on.
  resume=0
  [[ " $* " == *" --resume "* ]] && resume=1
  while [ $# -gt 0 ]; do
    if [ -n "${small[$1]+x}" ]; then
      [ "$resume" -eq 1 ] && [ "$1" = --steps ] && args+=(--steps 5)
      shift 2
      continue
    fi
    case "$1" in
      runs/*) args+=("$tmp/$1") ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  for flag in "${!small[@]}"; do
    [ "$resume" -eq 0 ] && grep -qE -- "^ +$flag " <<<"$help" && args+=("$flag" "${small[$flag]}")
  done
  echo "readme_commands: ramflow ${args[*]}"
  if ! "$cli" "${args[@]}" >"$tmp/log" 2>&1; then
    echo "readme_commands: FAILED: $command" >&2
    tail -5 "$tmp/log" >&2
    failed=1
  fi
done
exit "$failed"
