#!/usr/bin/env bash
# Replay throughput with the alert context loaded (a 10,000-entry account
# map, as `accounts_file` and as config tables, and MaxMind's City and ASN
# test databases), beside the same run without it, on one file, pinned to
# one core.
#
#   benches/enrich.sh FILE.jsonl [CONFIG.toml]
#
# FILE holds CloudTrail JSON lines (make one with
# `cargo run --release --example gen-trail -- 240000 /tmp/trail.jsonl`).
# CONFIG defaults to FILE.toml when it exists. Look-ups happen only for
# findings, so the cost follows the number of findings. Times are CPU
# seconds (user + system), the best of REPS runs (default 3).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
file=${1:?usage: benches/enrich.sh FILE.jsonl [CONFIG.toml]}
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
mm=$here/tests/fixtures/third_party/maxmind
# 10,000 accounts: the trail's own, then made-up ones; as a CSV and as
# config tables.
python3 - "$file" "$work/accounts.csv" "$work/tables.toml" <<'PY'
import re, sys
seen = []
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        for a in re.findall(r'"(?:recipientAccountId|accountId)"\s*:\s*"(\d{12})"', line):
            if a not in seen:
                seen.append(a)
accounts = seen[:10000]
n = 0
while len(accounts) < 10000:
    a = f"{900000000000 + n:012d}"
    n += 1
    if a not in seen:
        accounts.append(a)
with open(sys.argv[2], "w") as csv, open(sys.argv[3], "w") as toml:
    csv.write("account_id,name,environment,owner\n")
    for i, a in enumerate(accounts):
        csv.write(f"{a},account-{i},production,team-{i % 97}\n")
        toml.write(f'[enrich.accounts."{a}"]\nname = "account-{i}"\nenvironment = "production"\nowner = "team-{i % 97}"\n')
PY
context() {
  printf '\n[enrich.geoip]\ncity_db = "%s"\nasn_db = "%s"\n' "$mm/GeoLite2-City-Test.mmdb" "$mm/GeoLite2-ASN-Test.mmdb"
  printf '\n[detect.runbooks]\n"root-*" = "https://wiki.example.com/runbooks/root"\n'
}
{ cat "$work/base.toml"; printf '\n[enrich]\naccounts_file = "%s"\n' "$work/accounts.csv"; context; } >"$work/enrich.toml"
{ cat "$work/base.toml"; context; cat "$work/tables.toml"; } >"$work/tables-run.toml"

: >"$work/empty.jsonl"
events=$(wc -l <"$file")
printf '%s: %s events; best of %s run(s), one core\n\n' "$file" "$events" "$reps"
# The start-up (reading the config and the databases) is measured on an
# empty input and shown apart: a daemon pays it once.
best_of() { # CONFIG INPUT OUT -> best CPU seconds
  local best="" t
  for _ in $(seq "$reps"); do
    /usr/bin/time -f '%U %S' -o "$work/time" "${pin[@]}" "$rootwatch" replay --jobs 1 \
      --config "$1" "$2" >"$3" 2>"$work/err"
    t=$(awk '{print $1 + $2}' "$work/time")
    if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
  done
  echo "$best"
}
printf '| context | CPU s | of it start-up | events/s | events/s after start-up | findings | with account name | vs none, after start-up |\n|---|---|---|---|---|---|---|---|\n'
declare -A rate
for run in base enrich tables-run; do
  total=$(best_of "$work/$run.toml" "$file" "$work/$run.out")
  start=$(best_of "$work/$run.toml" "$work/empty.jsonl" /dev/null)
  work_s=$(echo "$total - $start" | bc -l)
  rate[$run]=$(echo "$events / $work_s" | bc -l)
  findings=$(wc -l <"$work/$run.out")
  named=$(grep -c '"account_name":' "$work/$run.out" || true)
  case $run in
    base) name="none" ;;
    enrich) name="10,000 accounts (accounts_file) + City + ASN" ;;
    *) name="10,000 accounts (config tables) + City + ASN" ;;
  esac
  ratio=$(echo "scale=2; ${rate[$run]} / ${rate[base]}" | bc -l)
  printf '| %s | %s | %s | %.0f | %.0f | %s | %s | %s |\n' "$name" "$total" "$start" \
    "$(echo "$events / $total" | bc -l)" "${rate[$run]}" "$findings" "$named" "$ratio"
done
