#!/usr/bin/env bash
# End-to-end benchmark through SQS: an emulator on 127.0.0.1, a preloaded
# queue of EventBridge-wrapped CloudTrail events (one per message), a
# consumer that only receives and deletes (the baseline), then `rootwatch
# run` on the same backlog with a local webhook receiver; then an idle
# phase and a latency phase at a steady rate. Prints one table.
#
#   benches/e2e.sh [EVENTS]          (default 100000)
#
# Environment: CONCURRENCY (workers, both consumers; 4), IDLE_SECS (60),
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
export EXPECTED_FINDINGS EXPECTED_LATENCY_FINDINGS

"$node" benches/e2e/driver.mjs
