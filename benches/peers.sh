#!/usr/bin/env bash
# Replay throughput of rootwatch next to its peers, on one file, in one run.
#
#   benches/peers.sh FILE.jsonl [CONFIG.toml]
#
# FILE holds CloudTrail JSON lines (make one with
# `cargo run --example gen-trail -- 240000 /tmp/trail.jsonl`).
# CONFIG defaults to FILE.toml when it exists (gen-trail writes it, with the
# 10,000-prefix allow list), else to a fresh copy of that allow list.
# The one-core engines run pinned to one core (taskset -c 0), REPS times
# (default 3); the table shows the best run of each. Their times are CPU
# seconds (user + system): on a shared machine the wall clock measures the
# neighbours too. The every-core rows are wall-clock times (CPU time would
# hide the gain); run them on a quiet machine. The findings column must
# agree: a fast wrong answer does not count, and the script fails when it
# does not.
#
# Engines: `rootwatch replay --jobs 1` (one worker, as on the one core
# it is pinned to; more would only take turns) on the file, on a gzip copy (decompression
# included) and on the same records as gzip CloudTrail log files (one
# `{"Records":[...]}` document per file, LOG_FILE_EVENTS records each,
# default 10,000; what a backfill of a trail bucket reads); benches/peer.py (json.loads + the same rules);
# benches/peer_minimal.py (json.loads and four checks, counting only: the
# smallest Lambda-style peer; run only on an allow list of at most three
# CIDRs, as gen-trail's finding-heavy shape writes, where its count agrees
# with rootwatch's); the VRL peer,
# benches/vrl-peer (Vector's VRL engine running parse_json + the same rules
# as one compiled program; built here into its own target directory, and
# left out with a one-line reason when it cannot be built; VRL=0 leaves it
# out). The ratio column compares each engine with `rootwatch replay`.
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
# shellcheck source=benches/build.sh
source benches/build.sh
vrl_note=""
if [[ ${VRL:-1} == 0 ]]; then
  vrl_note="vector VRL peer: not run (VRL=0)"
  vrl_peer=""
elif echo "building the VRL peer (benches/vrl-peer)..." >&2 && ! build_vrl_peer "$work/vrl-build.err"; then
  vrl_note="vector VRL peer: not run, its build failed: $(grep -m1 -E '^error' "$work/vrl-build.err" || tail -1 "$work/vrl-build.err")"
  vrl_peer=""
fi

config=${2:-}
if [[ -z $config ]]; then
  if [[ -f $file.toml ]]; then
    config=$file.toml
  else
    "$gen_trail" 0 "$work/empty.jsonl" 2>/dev/null
    config=$work/empty.jsonl.toml
  fi
fi
gzip -c -6 "$file" >"$work/trail.jsonl.gz"
# The same records as CloudTrail writes them to S3: gzip log files, one
# `{"Records":[...]}` document each, LOG_FILE_EVENTS records per file.
mkdir "$work/logs"
split -l "${LOG_FILE_EVENTS:-10000}" -d -a 6 "$file" "$work/logs/part-"
for part in "$work"/logs/part-*; do
  { printf '{"Records":['; paste -sd, "$part"; printf ']}'; } | gzip -6 >"$part.json.gz"
  rm "$part"
done
logs=("$work"/logs/part-*.json.gz)

# run NAME wall|cpu COMMAND...: the best time over REPS runs, and the
# findings count the command reported (parsed from its stderr).
declare -A secs findings events stderr
run() {
  local name=$1 timing=$2
  shift 2
  local best=""
  for _ in $(seq "$reps"); do
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
      echo "$name failed:" >&2
      cat "$work/err" >&2
      return 1
    }
    local t
    if [[ $timing == wall ]]; then
      t=$(awk '{print $1}' "$work/time")
    else
      t=$(awk '{print $2 + $3}' "$work/time")
    fi
    if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
  done
  secs[$name]=$best
  stderr[$name]=$(cat "$work/err")
  findings[$name]=$(grep -oE '[0-9]+ finding\(s\)' "$work/err" | head -1 | cut -d' ' -f1)
  events[$name]=$(grep -oE '[0-9]+ event\(s\)' "$work/err" | head -1 | cut -d' ' -f1)
}

cores=$(nproc)
engines=()
run "rootwatch replay" cpu "${pin[@]}" "$rootwatch" replay --jobs 1 --config "$config" "$file" && engines+=("rootwatch replay")
run "rootwatch replay (gzip)" cpu "${pin[@]}" "$rootwatch" replay --jobs 1 --config "$config" "$work/trail.jsonl.gz" && engines+=("rootwatch replay (gzip)")
run "rootwatch (log files, gzip)" cpu "${pin[@]}" "$rootwatch" replay --jobs 1 --config "$config" "${logs[@]}" && engines+=("rootwatch (log files, gzip)")
run "python json.loads peer" cpu "${pin[@]}" "$python" benches/peer.py --config "$config" "$file" && engines+=("python json.loads peer")
# The minimal peer scans its allow list network by network, as a few lines
# of Python would: with the 10,000-prefix list it takes minutes and would
# flatter rootwatch, so it runs only with the finding-heavy shape's three.
minimal_note=""
if (($(grep -c '^  "' "$config") <= 3)); then
  run "python minimal peer" cpu "${pin[@]}" "$python" benches/peer_minimal.py --config "$config" "$file" && engines+=("python minimal peer")
else
  minimal_note="python minimal peer: not run (its allow list scan is linear; run it on gen-trail's finding-heavy shape)"
fi
if [[ -n $vrl_peer ]]; then
  run "vector VRL peer" cpu "${pin[@]}" "$vrl_peer" --config "$config" "$file" && engines+=("vector VRL peer")
fi
run "rootwatch, 1 core, wall" wall "${pin[@]}" "$rootwatch" replay --jobs 1 --config "$config" "$file" && engines+=("rootwatch, 1 core, wall")
run "rootwatch, $cores cores, wall" wall "$rootwatch" replay --jobs "$cores" --config "$config" "$file" && engines+=("rootwatch, $cores cores, wall")
run "log files, 1 core, wall" wall "${pin[@]}" "$rootwatch" replay --jobs 1 --config "$config" "${logs[@]}" && engines+=("log files, 1 core, wall")
run "log files, $cores cores, wall" wall "$rootwatch" replay --jobs "$cores" --config "$config" "${logs[@]}" && engines+=("log files, $cores cores, wall")

base=${secs["rootwatch replay"]}
n=${events["rootwatch replay"]}
printf '\n%s: %s events, %s bytes; best of %s run(s) each; one core is %s\n' \
  "$file" "$n" "$(stat -c %s "$file")" "$reps" "${pin[*]:-not pinned}"
printf '| %-29s | %10s | %12s | %9s | %22s |\n' engine seconds events/s findings "rootwatch is N× faster"
printf '|%s|%s|%s|%s|%s|\n' "-------------------------------" "------------" "--------------" "-----------" "------------------------"
status=0
for e in "${engines[@]}"; do
  rate=$(echo "$n / ${secs[$e]}" | bc -l)
  ratio=$(echo "${secs[$e]} / $base" | bc -l)
  printf '| %-29s | %10.2f | %12.0f | %9s | %22.1f |\n' "$e" "${secs[$e]}" "$rate" "${findings[$e]:-?}" "$ratio"
  if [[ ${findings[$e]:-} != "${findings["rootwatch replay"]}" ]]; then
    status=1
  fi
done
one=${secs["rootwatch, 1 core, wall"]:-}
all=${secs["rootwatch, $cores cores, wall"]:-}
if [[ -n $one && -n $all ]]; then
  printf 'every core (%s) against one, wall clock: %.2f×\n' "$cores" "$(echo "$one / $all" | bc -l)"
fi
one=${secs["log files, 1 core, wall"]:-}
all=${secs["log files, $cores cores, wall"]:-}
if [[ -n $one && -n $all ]]; then
  printf 'log files, every core (%s) against one, wall clock: %.2f×\n' "$cores" "$(echo "$one / $all" | bc -l)"
fi
if [[ -n $minimal_note ]]; then echo "$minimal_note"; fi
if [[ -n $vrl_note ]]; then
  echo "$vrl_note"
else
  vrl_secs=${secs["vector VRL peer"]:-}
  if [[ -n $vrl_secs ]]; then
    # Its time includes compiling the VRL program once (type checking the
    # allow list): say how much, and the ratio without it.
    compile=$(grep -oE 'compiled in [0-9.]+ s' <<<"${stderr["vector VRL peer"]}" | awk '{print $3}')
    printf 'rootwatch replay against the vector VRL peer, one core: %.1f×; %.1f× without its %.2f s compiling rules.vrl\n' \
      "$(echo "$vrl_secs / $base" | bc -l)" "$(echo "($vrl_secs - ${compile:-0}) / $base" | bc -l)" "${compile:-0}"
  fi
fi
if ((status)); then
  echo "FINDINGS DIFFER between engines: the figures above do not count" >&2
fi
exit $status
