#!/usr/bin/env bash
# End-to-end benchmark through SQS and S3: an emulator on 127.0.0.1, a
# preloaded queue of EventBridge-wrapped CloudTrail events (one per
# message), a consumer that only receives and deletes (the baseline), then
# `rootwatch run` on the same backlog with a local webhook receiver; then an
# idle phase and a latency phase at a steady rate. Then the same events as
# gzip CloudTrail log files in an S3 bucket, one S3 event notification per
# file on a second queue: a consumer that receives, downloads, inflates and
# deletes, then rootwatch; and, if BIG_EVENTS is set, one large log file,
# downloaded and inflated once as its baseline. Then a noisy key with the
# throttle off and on. Prints a table per part.
#
#   benches/e2e.sh [EVENTS]          (default 100000)
#
# Environment: S3_EVENTS (events of the S3 part, the first of the backlog;
# EVENTS; 0 skips it), S3_FILE_EVENTS (records per log file; 1000),
# BIG_EVENTS (records of the one large log file; 0: none; 550000 makes
# about 100 MB of gzip), NOISY_EVENTS (the noisy-key part: calls by one
# IAM user from outside the allow list with a root login among them, run
# with the throttle off and with the shipped window; 30000; 0 skips it),
# CONCURRENCY (workers, both consumers; 4), IDLE_SECS (60),
# LATENCY_RATE (events/s; 1000), LATENCY_SECS (10), EMULATOR_PORT (45231;
# the next three ports are used too), BENCH_HOME (~/.cache/rootwatch/bench:
# Node 22 and fauxqs are installed there from npm on first use), ROOTWATCH
# (a binary to measure instead of the release build, e.g. a profiler
# wrapper; CPU and RSS are then those of the process started).
#
# moto is far too slow for this (tens to hundreds of messages/s); fauxqs
# (SQS, SNS and S3 in Node) keeps up with more than 10,000 messages/s.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
events=${1:-100000}
export EVENTS=$events
export BENCH_HOME=${BENCH_HOME:-$HOME/.cache/rootwatch/bench}
export LATENCY_RATE=${LATENCY_RATE:-1000} LATENCY_SECS=${LATENCY_SECS:-10}

mkdir -p "$BENCH_HOME"
if [[ ! -x $BENCH_HOME/node_modules/.bin/node || ! -d $BENCH_HOME/node_modules/fauxqs ]]; then
  (cd "$BENCH_HOME" && { [[ -f package.json ]] || echo '{"private":true}' >package.json; } &&
    npm install --no-audit --no-fund node@22 fauxqs@2.4.1 >/dev/null)
fi
node=$BENCH_HOME/node_modules/.bin/node

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export WORK=$work

cd "$here"
# shellcheck source=benches/build.sh
source benches/build.sh
export ROOTWATCH=${ROOTWATCH:-$rootwatch}

# The backlog and, after it, the events of the latency phase: distinct
# events, so dedup does not hide any.
latency_events=$((LATENCY_RATE * LATENCY_SECS))
"$gen_trail" $((events + latency_events)) "$work/trail.jsonl" 7 2>/dev/null
export TRAIL=$work/trail.jsonl ALLOWLIST_CONFIG=$work/trail.jsonl.toml

# What rootwatch must deliver, from replay of the same events.
findings() { "$ROOTWATCH" replay --config "$ALLOWLIST_CONFIG" - 2>&1 >/dev/null | grep -oE '[0-9]+ finding\(s\)' | cut -d' ' -f1; }
EXPECTED_FINDINGS=$(head -n "$events" "$TRAIL" | findings)
EXPECTED_LATENCY_FINDINGS=$(tail -n "+$((events + 1))" "$TRAIL" | findings)
export S3_EVENTS=${S3_EVENTS:-$events}
EXPECTED_S3_FINDINGS=$(head -n "$S3_EVENTS" "$TRAIL" | findings)
export EXPECTED_FINDINGS EXPECTED_LATENCY_FINDINGS EXPECTED_S3_FINDINGS

# The large log file: other events (another seed), one `Records` document.
export BIG_EVENTS=${BIG_EVENTS:-0}
if ((BIG_EVENTS > 0)); then
  "$gen_trail" "$BIG_EVENTS" "$work/big.jsonl" 11 2>/dev/null
  EXPECTED_BIG_FINDINGS=$(findings <"$work/big.jsonl")
  { printf '{"Records":['; paste -sd, "$work/big.jsonl"; printf ']}'; } | gzip -6 >"$work/big.json.gz"
  rm "$work/big.jsonl"
  export BIG_GZIP=$work/big.json.gz EXPECTED_BIG_FINDINGS
fi

# A backlog of a million events is several GB in the emulator's heap.
export NODE_OPTIONS="--max-old-space-size=16384"
"$node" benches/e2e/driver.mjs
