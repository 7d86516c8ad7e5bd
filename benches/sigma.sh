#!/usr/bin/env bash
# Replay throughput with SigmaHQ's 57 CloudTrail rules loaded, beside the
# same run without them, on one file, pinned to one core.
#
#   benches/sigma.sh FILE.jsonl [CONFIG.toml]
#
# FILE holds CloudTrail JSON lines (make one with
# `cargo run --example gen-trail -- 240000 /tmp/trail.jsonl`). CONFIG
# defaults to FILE.toml when it exists (gen-trail writes it, with the
# 10,000-prefix allow list). The rules are tests/fixtures/third_party/
# sigmahq/rules. Times are CPU seconds (user + system), the best of REPS
# runs (default 3). The rows say how many records the prefilter let
# through to a full parse and how many findings came out: the rules' own
# matches are work no prefilter can save.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
file=${1:?usage: benches/sigma.sh FILE.jsonl [CONFIG.toml]}
reps=${REPS:-3}
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$here"
# shellcheck source=benches/build.sh
source benches/build.sh

base=${2:-}
if [[ -z $base && -f $file.toml ]]; then base=$file.toml; fi
if [[ -n $base ]]; then cp "$base" "$work/base.toml"; else : >"$work/base.toml"; fi
cp "$work/base.toml" "$work/sigma.toml"
printf '\n[detect.sigma]\nrules = ["%s"]\n' "$here/tests/fixtures/third_party/sigmahq/rules" >>"$work/sigma.toml"
# The third row turns off "AWS STS AssumeRole Misuse", which fires on every
# call made in a role session (most of a real trail's records), as a SOC
# running these rules would.
runs=(base sigma)
if ! grep -q '^\[detect\]' "$work/base.toml"; then
  cp "$work/sigma.toml" "$work/quiet.toml"
  printf '\n[detect]\ndisabled = ["sigma:905d389b-b853-46d0-9d3d-dea0d3a3cd49"]\n' >>"$work/quiet.toml"
  runs+=(quiet)
fi

events=$(wc -l <"$file")
bytes=$(wc -c <"$file")
printf '%s: %s events, %s bytes; best of %s run(s), one core\n\n' "$file" "$events" "$bytes" "$reps"
printf '| rules | CPU s | events/s | findings | of them Sigma | vs built-in only |\n|---|---|---|---|---|---|\n'
declare -A secs
for run in "${runs[@]}"; do
  best=""
  for _ in $(seq "$reps"); do
    /usr/bin/time -f '%U %S' -o "$work/time" "${pin[@]}" "$rootwatch" replay --jobs 1 \
      --config "$work/$run.toml" "$file" >"$work/$run.out" 2>"$work/$run.err"
    t=$(awk '{print $1 + $2}' "$work/time")
    if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
  done
  secs[$run]=$best
  findings=$(wc -l <"$work/$run.out")
  sigma=$(grep -c '"rule":"sigma:' "$work/$run.out" || true)
  case $run in
    base) name="built-in (10)" ;;
    sigma) name="built-in + SigmaHQ (57)" ;;
    quiet) name="built-in + SigmaHQ without AssumeRole Misuse (56)" ;;
  esac
  ratio=$(echo "scale=2; ${secs[base]} / $best" | bc -l)
  printf '| %s | %s | %.0f | %s | %s | %s |\n' "$name" "$best" \
    "$(echo "$events / $best" | bc -l)" "$findings" "$sigma" "$ratio"
done
