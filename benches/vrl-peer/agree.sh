#!/usr/bin/env bash
# The VRL peer must find what rootwatch and benches/peer.py find.
#
#   benches/vrl-peer/agree.sh [FILE.jsonl[:CONFIG.toml]]...
#
# Runs `rootwatch replay`, benches/peer.py and the VRL peer on each file
# and compares their findings per rule; the two peers print the same
# finding lines, so those are compared line by line too. The files are the
# ones given (CONFIG defaults to FILE.toml when it exists, as in
# benches/peers.sh), the project's CloudTrail corpora,
# tests/fixtures/**/*.jsonl, and two of them wrapped in every envelope
# replay reads (EventBridge, SNS, Records, CloudWatch Logs data, lists, and
# forms that must be skipped), each corpus twice: with no config, and with
# the benchmark allow list, so that source-ip-not-allowed is checked too.
# A corpus peer.py cannot read is reported and left out. Exits 1 when any
# two engines disagree on any file; a row where rootwatch differs from both
# peers alike says so.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$here"
# shellcheck source=benches/build.sh
source benches/build.sh
build_vrl_peer /dev/stderr
"$gen_trail" 0 "$work/allow.jsonl" 2>/dev/null
allow=$work/allow.jsonl.toml

runs=()
for arg in "$@"; do
  file=${arg%%:*}
  config=${arg#*:}
  if [[ $config == "$arg" ]]; then config=""; fi
  if [[ -z $config && -f $file.toml ]]; then config=$file.toml; fi
  runs+=("$file|$config")
done
# wrap SOURCE OUT: SOURCE's records, one envelope after another.
wrap() {
  "$python" - "$1" "$2" <<'PY'
import json, sys

records = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
s3_notice = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "trail"}, "object": {"key": "a.json.gz"}}}
def eventbridge(r, kind="AWS API Call via CloudTrail"):
    return {"version": "0", "detail-type": kind, "source": "aws.s3", "detail": r}
def sns(body):
    return {"Type": "Notification", "MessageId": "1", "Message": json.dumps(body)}
def logs(r):
    return {"messageType": "DATA_MESSAGE", "logGroup": "trail",
            "logEvents": [{"id": "1", "message": json.dumps(r)}, {"id": "2", "message": "not JSON"}]}
forms = [
    eventbridge,
    lambda r: sns(eventbridge(r)),
    lambda r: {"Records": [r, s3_notice, r]},  # a duplicate delivery, too
    lambda r: sns({"Records": [r]}),
    logs,
    lambda r: [r, [sns(r)]],
    lambda r: eventbridge(r, "Object Created"),  # not CloudTrail: skipped
    lambda r: [[[[[r]]]]],  # deeper than any real envelope: skipped
    lambda r: r,
]
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for i, r in enumerate(records):
        out.write(json.dumps(forms[i % len(forms)](r)) + "\n")
    out.write(json.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []}) + "\n")
    out.write(json.dumps({"Type": "SubscriptionConfirmation", "Message": "{}"}) + "\n")
PY
}
corpora=()
while IFS= read -r file; do corpora+=("$file"); done < <(find tests/fixtures -name '*.jsonl' | sort)
for name in aws-docs-examples panther-analysis; do
  source=$(find "tests/fixtures/third_party/$name" -name '*records.jsonl' | sort | head -1)
  wrap "$source" "$work/$name-in-envelopes.jsonl"
  corpora+=("$work/$name-in-envelopes.jsonl")
done
for file in "${corpora[@]}"; do
  runs+=("$file|" "$file|$allow")
done

# per_rule FILE: "rule count" lines from the peers' JSON lines.
per_rule() {
  { grep -oE '"rule": "[^"]*"' "$1" || true; } | cut -d'"' -f4 | sort | uniq -c | awk '{print $2, $1}'
}

# count WORD FILE: N from the first "N WORD(s)" in FILE.
count() { { grep -oE "[0-9]+ $1\\(s\\)" "$2" || echo "?"; } | head -1 | cut -d' ' -f1; }

status=0
rootwatch_differs=0
printf '| %-72s | %-20s | %8s | %8s | %s\n' file config findings events agree
for run in "${runs[@]}"; do
  file=${run%%|*}
  config=${run#*|}
  args=()
  label=none
  if [[ -n $config ]]; then
    args=(--config "$config")
    label=$([[ $config == "$allow" ]] && echo allowlist || basename "$config")
  fi
  if ! "$python" benches/peer.py "${args[@]}" "$file" >"$work/py.out" 2>"$work/py.err"; then
    printf '| %-72s | %-20s | %8s | %8s | %s\n' "$file" "$label" - - "left out: peer.py cannot read it ($(tail -1 "$work/py.err"))"
    continue
  fi
  "$vrl_peer" "${args[@]}" "$file" >"$work/vrl.out" 2>"$work/vrl.err" || {
    echo "vrl-peer failed on $file:" >&2
    cat "$work/vrl.err" >&2
    exit 1
  }
  # replay exits non-zero when a file holds lines it cannot decode; its
  # summary still counts what it read.
  "$rootwatch" replay "${args[@]}" "$file" >/dev/null 2>"$work/rw.err" || true
  { grep -E '^  findings  ' "$work/rw.err" || true; } | awk '{print $2, $3}' | sort >"$work/rw.rules"
  per_rule "$work/py.out" | sort >"$work/py.rules"
  per_rule "$work/vrl.out" | sort >"$work/vrl.rules"
  f_rw=$(count finding "$work/rw.err")
  f_py=$(count finding "$work/py.err")
  f_vrl=$(count finding "$work/vrl.err")
  e_py=$(count event "$work/py.err")
  e_vrl=$(count event "$work/vrl.err")
  verdict=yes
  if [[ $f_py != "$f_vrl" || $e_py != "$e_vrl" ]] || ! cmp -s "$work/py.rules" "$work/vrl.rules"; then
    verdict="NO: peer.py $f_py ($e_py events), vrl-peer $f_vrl ($e_vrl events)"
    status=1
  elif ! cmp -s "$work/py.out" "$work/vrl.out"; then
    verdict="NO: same counts as peer.py, different finding lines"
    status=1
    diff "$work/py.out" "$work/vrl.out" | head -5 >&2 || true
  elif [[ $f_rw != "$f_vrl" ]] || ! cmp -s "$work/rw.rules" "$work/vrl.rules"; then
    # Both peers agree and rootwatch does not: a difference between
    # rootwatch and the reference, peer.py, not one the VRL peer made.
    verdict="peers agree; ROOTWATCH DIFFERS: $f_rw"
    rootwatch_differs=1
    status=1
  fi
  if [[ $verdict != yes ]]; then
    for e in rw py vrl; do
      echo "  $e per rule: $(tr '\n' ' ' <"$work/$e.rules")" >&2
    done
  fi
  printf '| %-72s | %-20s | %8s | %8s | %s\n' "${file#"$work/"}" "$label" "$f_vrl" "$e_vrl" "$verdict"
done
if ((rootwatch_differs)); then
  echo "rootwatch replay differs from the peers where marked" >&2
fi
if ((status)); then
  echo "the engines DISAGREE on at least one file" >&2
else
  echo "all three engines agree on every file, per rule"
fi
exit $status
