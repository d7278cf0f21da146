#!/usr/bin/env bash
# Instructions per event of the engine's batch path: a figure that does not vary from run to run.
#
# On shared 2-core machines the CPU time of one and the same `stream engine-profile` run varies by
# 15-40 %, more than most hot-path changes save. This runs it under valgrind's callgrind twice,
# with and without the batches, and prints the difference per event: compare it before and
# after a change to the fold, settle or build (docs/architecture.md, "Where a worker's time
# goes"). About 50x slower than the plain run; Redis and the broker run outside valgrind.
#
#   deploy/local/count-instructions.sh [engine-profile options]   # default: --events 200000
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind > /dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
args=("$@")
events=""
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = "--events" ]; then events=${args[$((i + 1))]}; fi
done
# The divisor must be the run's own event count: pass it explicitly when not given.
[ -n "$events" ] || { events=200000; args+=(--events "$events"); }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {  # $1: output name, rest: extra options; prints the collected instruction count
    local name=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$out/$name" \
        .venv/bin/python .venv/bin/stream engine-profile "${args[@]}" "$@" > "$out/$name.log" 2>&1
    grep -o 'Collected : [0-9]*' "$out/$name.log" | grep -o '[0-9]*$'
}
base=$(count setup --setup-only)
run=$(count run)
echo "$(( (run - base) / events )) instructions per event (engine-profile ${args[*]}; callgrind)"
