#!/usr/bin/env bash
# Resident memory of `rootwatch run` with an SQS source: idle before any
# message, and idle again after draining a backlog; and the binary's size.
#
#   benches/rss.sh [BINARY] [EVENTS]
#
# BINARY defaults to the release build (built here); EVENTS (default 1000)
# EventBridge-wrapped CloudTrail records are queued, 10 per SendMessageBatch,
# before rootwatch starts. The emulator is moto from the test virtualenv
# (scripts/test.sh installs it; ROOTWATCH_TEST_VENV, default
# ~/.cache/rootwatch/venv-test), on a free loopback port. Alerts go to
# stdout (discarded): the sink is not what is measured. RSS is read from
# /proc/PID/status (VmRSS, RssAnon, RssFile) after IDLE_SECS (default 10)
# of quiet each time.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin=${1:-}
events=${2:-1000}
idle=${IDLE_SECS:-10}
venv=${ROOTWATCH_TEST_VENV:-$HOME/.cache/rootwatch/venv-test}
[[ -x $venv/bin/moto_server ]] || { echo "no moto in $venv: run scripts/test.sh once" >&2; exit 1; }
if [[ -z $bin ]]; then
  cargo build --release --locked --quiet --bin rootwatch
  bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/rootwatch
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
rw=""
cleanup() {
  [[ -n $rw ]] && kill "$rw" 2>/dev/null || true
  kill "$moto" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

# The queue and its backlog, through boto3 from the same virtualenv.
queue=$("$venv/bin/python" - "$events" <<'PY'
import json, sys, uuid, boto3
n = int(sys.argv[1])
sqs = boto3.client("sqs")
url = sqs.create_queue(QueueName="rss-bench")["QueueUrl"]
batch = []
for i in range(n):
    record = {"eventVersion": "1.08", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/ci", "accountId": "111122223333"},
              "eventTime": "2024-05-01T12:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
              "sourceIPAddress": "198.18.%d.%d" % (i // 250 % 250, i % 250 + 1), "userAgent": "aws-cli/2.15.0",
              "eventID": str(uuid.uuid4()), "eventType": "AwsApiCall", "recipientAccountId": "111122223333"}
    body = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
            "account": "111122223333", "time": "2024-05-01T12:00:00Z", "region": "us-east-1", "resources": [], "detail": record}
    batch.append({"Id": str(i % 10), "MessageBody": json.dumps(body)})
    if len(batch) == 10:
        sqs.send_message_batch(QueueUrl=url, Entries=batch)
        batch = []
if batch:
    sqs.send_message_batch(QueueUrl=url, Entries=batch)
print(url)
PY
)

cat >"$work/rootwatch.toml" <<EOF
[[sources]]
type = "sqs"
queue_url = "$queue"
[detect.ip_allowlist]
scope = "all"
cidrs = ["10.0.0.0/8"]
[throttle]
window_secs = 0
[[sinks]]
type = "stdout"
[server]
listen = ""
EOF

depth() {
  "$venv/bin/python" -c "import boto3,sys; a=boto3.client('sqs').get_queue_attributes(QueueUrl=sys.argv[1], AttributeNames=['ApproximateNumberOfMessages','ApproximateNumberOfMessagesNotVisible'])['Attributes']; print(int(a['ApproximateNumberOfMessages'])+int(a['ApproximateNumberOfMessagesNotVisible']))" "$queue"
}
rss() { awk '/^(VmRSS|RssAnon|RssFile|VmHWM):/ {printf "%s %.1f MB  ", $1, $2/1024} END {print ""}' "/proc/$rw/status"; }

# The first reading: rootwatch on a second queue, with no messages.
empty=$("$venv/bin/python" -c "import boto3; print(boto3.client('sqs').create_queue(QueueName='rss-empty')['QueueUrl'])")
sed "s#$queue#$empty#" "$work/rootwatch.toml" >"$work/idle.toml"
"$bin" run --config "$work/idle.toml" >/dev/null 2>"$work/idle.log" &
rw=$!
sleep "$idle"
printf 'idle, no message yet:   '; rss
kill "$rw"; wait "$rw" || true

start=$(date +%s)
"$bin" run --config "$work/rootwatch.toml" >"$work/alerts.jsonl" 2>"$work/run.log" &
rw=$!
for _ in $(seq 1 600); do
  [[ $(depth) == 0 ]] && break
  sleep 1
done
printf 'drained %s events in %ss\n' "$events" $(($(date +%s) - start))
sleep "$idle"
printf 'idle after the drain:   '; rss
printf 'alerts: %s\n' "$(wc -l <"$work/alerts.jsonl")"
printf 'binary: %s bytes; stripped: ' "$(stat -c %s "$bin")"
strip -o "$work/stripped" "$bin" && stat -c %s "$work/stripped"
