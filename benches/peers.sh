#!/usr/bin/env bash
# Replay throughput of rootwatch next to its peers, on one file, in one run.
#
#   benches/peers.sh FILE.jsonl [CONFIG.toml]
#
# FILE holds CloudTrail JSON lines (make one with
# `cargo run --release --example gen-trail -- 240000 /tmp/trail.jsonl`).
# CONFIG defaults to FILE.toml when it exists (gen-trail writes it, with the
# 10,000-prefix allow list), else to a fresh copy of that allow list.
# Every engine runs pinned to one core (taskset -c 0), REPS times (default
# 3); the table shows the best run of each. The findings column must agree:
# a fast wrong answer does not count, and the script fails when it does not.
#
# Engines: `rootwatch replay` on the file and on a gzip copy (decompression
# included); benches/peer.py (json.loads + the same rules). Vector's VRL
# engine is not run: its CLI did not build here within the time allowed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
file=${1:?usage: benches/peers.sh FILE.jsonl [CONFIG.toml]}
reps=${REPS:-3}
python=${PYTHON:-python3}
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$here"
cargo build --release --locked --quiet --bin rootwatch --example gen-trail
target=$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rootwatch=$target/release/rootwatch

config=${2:-}
if [[ -z $config ]]; then
  if [[ -f $file.toml ]]; then
    config=$file.toml
  else
    "$target/release/examples/gen-trail" 0 "$work/empty.jsonl" 2>/dev/null
    config=$work/empty.jsonl.toml
  fi
fi
gzip -c -6 "$file" >"$work/trail.jsonl.gz"

# run NAME COMMAND...: the best wall time over REPS runs, and the findings
# count the command reported (parsed from its stderr).
declare -A secs findings events
run() {
  local name=$1
  shift
  local best=""
  for _ in $(seq "$reps"); do
    local t0 t1
    t0=$(date +%s.%N)
    "${pin[@]}" "$@" >/dev/null 2>"$work/err" || {
      echo "$name failed:" >&2
      cat "$work/err" >&2
      return 1
    }
    t1=$(date +%s.%N)
    local t
    t=$(echo "$t1 - $t0" | bc -l)
    if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
  done
  secs[$name]=$best
  findings[$name]=$(grep -oE '[0-9]+ finding\(s\)' "$work/err" | head -1 | cut -d' ' -f1)
  events[$name]=$(grep -oE '[0-9]+ event\(s\)' "$work/err" | head -1 | cut -d' ' -f1)
}

engines=()
run "rootwatch replay" "$rootwatch" replay --config "$config" "$file" && engines+=("rootwatch replay")
run "rootwatch replay (gzip)" "$rootwatch" replay --config "$config" "$work/trail.jsonl.gz" && engines+=("rootwatch replay (gzip)")
run "python json.loads peer" "$python" benches/peer.py --config "$config" "$file" && engines+=("python json.loads peer")

base=${secs["rootwatch replay"]}
n=${events["rootwatch replay"]}
printf '\n%s: %s events, %s bytes; best of %s run(s) each, one core (%s)\n' \
  "$file" "$n" "$(stat -c %s "$file")" "$reps" "${pin[*]:-not pinned}"
printf '| %-26s | %12s | %9s | %22s |\n' engine events/s findings "rootwatch is N× faster"
printf '|%s|%s|%s|%s|\n' "----------------------------" "--------------" "-----------" "------------------------"
status=0
for e in "${engines[@]}"; do
  rate=$(echo "$n / ${secs[$e]}" | bc -l)
  ratio=$(echo "${secs[$e]} / $base" | bc -l)
  printf '| %-26s | %12.0f | %9s | %22.1f |\n' "$e" "$rate" "${findings[$e]:-?}" "$ratio"
  if [[ ${findings[$e]:-} != "${findings["rootwatch replay"]}" ]]; then status=1; fi
done
echo "vector VRL: not installed (its CLI did not build within the time allowed here)"
if ((status)); then
  echo "FINDINGS DIFFER between engines: the figures above do not count" >&2
fi
exit $status
