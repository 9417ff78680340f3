#!/usr/bin/env bash
# Runs every `ramflow` command of the ```sh blocks of the README and the docs, as written, with a few
# steps: the commands a new user copies must work. Usage: readme_commands.sh CLI FILE...
#
# The files are read in the order given, and each file's commands in the order they appear. Each command
# keeps its own flags; only the amount of work shrinks. Flags that set the amount of work (--steps,
# --seeds, the evaluation sizes, --pretrain-steps) are replaced by small values, and paths under runs/ are
# moved into a temporary directory of the file's own, so that commands that read what an earlier command
# of the same file wrote (--config runs/first/config.json) find it, and two files may use the same run
# name. Lines that are not ramflow commands (scripts/run, scripts/test, the benchmarks, the example reward
# server) are left out: the test suite is itself scripts/test, and the benchmarks need a prepared
# environment. A --resume command gets no work-size flag but --steps 5. Exits 1 naming every command that
# failed.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: readme_commands.sh CLI FILE..." >&2; exit 2; }
cli="$1"
shift
files=("$@")
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"  # the repository: examples/ lives there
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export RAMFLOW_CACHE_DIR="$tmp/cache"  # shared by all files: the base model is pretrained once

# Commands of the ```sh blocks, continuation lines joined, as "INDEX<TAB>COMMAND" where INDEX is the
# file's position in the list.
mapfile -t commands < <(
  for i in "${!files[@]}"; do
    awk -v index_="$i" '
      /^```sh/ { inside = 1; next }
      /^```/   { inside = 0; next }
      inside {
        line = line $0
        if (line ~ /\\$/) { sub(/\\$/, "", line); next }
        if (line ~ /^ramflow /) print index_ "\t" line
        line = ""
      }' "${files[$i]}"
  done)
[ "${#commands[@]}" -gt 0 ] || { echo "readme_commands: no ramflow commands found in ${files[*]}" >&2; exit 1; }

# Work-size flags: replaced wherever the command has them, added where the subcommand takes them.
declare -A small=(
  [--steps]=3 [--seeds]=1 [--eval-every]=3 [--eval-samples]=100 [--eval-curve-samples]=100
  [--eval-pool]=2000 [--eval-kl-samples]=8 [--eval-kl-steps]=4 [--pretrain-steps]=200
)
# Commands that score on the example reward server (--reward-url http://127.0.0.1:8000/) get one of
# their own, on a free port.
server=""
if printf '%s\n' "${commands[@]}" | grep -q -- "--reward-url http://127.0.0.1:8000/"; then
  python3 "$root/examples/reward_server.py" --port 0 >"$tmp/server.url" 2>/dev/null &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 100); do [ -s "$tmp/server.url" ] && break; sleep 0.1; done
  server="$(head -1 "$tmp/server.url")"
fi
failed=0
for entry in "${commands[@]}"; do
  index="${entry%%$'\t'*}"
  command="${entry#*$'\t'}"
  file="${files[$index]}"
  runs="$tmp/file$index"  # this file's runs/ directory
  mkdir -p "$runs"
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
  # Sampling a diffusers pipeline counts its steps with --rollout-steps (its --steps is refused).
  pipeline_sample=0
  [[ "$sub" == sample && " $* " == *" --base "* ]] && pipeline_sample=1
  while [ $# -gt 0 ]; do
    if [ -n "${small[$1]+x}" ]; then
      [ "$resume" -eq 1 ] && [ "$1" = --steps ] && args+=(--steps 5)
      shift 2
      continue
    fi
    case "$1" in
      runs/*) args+=("$runs/$1") ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  for flag in "${!small[@]}"; do
    [ "$pipeline_sample" -eq 1 ] && [ "$flag" = --steps ] && continue
    [ "$resume" -eq 0 ] && grep -qE -- "^ +$flag " <<<"$help" && args+=("$flag" "${small[$flag]}")
  done
  echo "readme_commands: ($file) ramflow ${args[*]}"
  if ! "$cli" "${args[@]}" >"$tmp/log" 2>&1; then
    echo "readme_commands: FAILED ($file): $command" >&2
    tail -5 "$tmp/log" >&2
    failed=1
  fi
done
exit "$failed"
