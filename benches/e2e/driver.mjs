// End-to-end benchmark driver, started by benches/e2e.sh (read that first).
// Starts the emulator and the webhook receiver, measures a consumer that
// only receives and deletes, then rootwatch on the same preloaded queue,
// an idle phase and a paced latency phase, and prints one table.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const env = process.env;
const here = path.dirname(new URL(import.meta.url).pathname);
const N = Number(env.EVENTS ?? 100000);
const CONCURRENCY = Number(env.CONCURRENCY ?? 4);
const IDLE_SECS = Number(env.IDLE_SECS ?? 60);
const RATE = Number(env.LATENCY_RATE ?? 1000);
const LAT_SECS = Number(env.LATENCY_SECS ?? 10);
const PORT = Number(env.EMULATOR_PORT ?? 45231);
const STATS = PORT + 1;
const HOOK = PORT + 2;
const METRICS = PORT + 3;
const trail = fs.readFileSync(env.TRAIL, "utf8").split("\n").filter((l) => l.trim());
const expectedFindings = Number(env.EXPECTED_FINDINGS);
const expectedLatencyFindings = Number(env.EXPECTED_LATENCY_FINDINGS ?? NaN);
const work = env.WORK;

const children = [];
function start(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "inherit"], ...opts });
  children.push(p);
  return p;
}
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

async function until(what, f, secs = 600) {
  const end = Date.now() + secs * 1000;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      if (String(e).includes("rootwatch exited")) throw e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const endpoint = `http://127.0.0.1:${PORT}`;
async function sqs(action, body) {
  const r = await fetch(endpoint + "/", {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `AmazonSQS.${action}`,
    },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${action}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : {};
}
const stats = async (reset = false) =>
  (await fetch(`http://127.0.0.1:${STATS}/`, { method: reset ? "POST" : "GET" })).json();
const alerts = async () => (await (await fetch(`http://127.0.0.1:${HOOK}/`)).json()).alerts;

function eventbridge(record) {
  const r = JSON.parse(record);
  const source = "aws." + String(r.eventSource ?? "iam.amazonaws.com").split(".")[0];
  return JSON.stringify({
    version: "0",
    id: r.eventID,
    "detail-type": "AWS API Call via CloudTrail",
    source,
    account: r.recipientAccountId ?? "111122223333",
    time: r.eventTime,
    region: r.awsRegion ?? "us-east-1",
    resources: [],
    detail: r,
  });
}

async function sendAll(queue, bodies, parallel = 16) {
  let next = 0;
  async function lane() {
    while (next < bodies.length) {
      const chunk = bodies.slice(next, next + 10);
      next += 10;
      await sqs("SendMessageBatch", {
        QueueUrl: queue,
        Entries: chunk.map((b, i) => ({ Id: `m${i}`, MessageBody: b })),
      });
    }
  }
  await Promise.all(Array.from({ length: parallel }, lane));
}

async function depth(queue) {
  const a = (
    await sqs("GetQueueAttributes", {
      QueueUrl: queue,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    })
  ).Attributes;
  return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible);
}

function proc(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k) => Number(status.match(new RegExp(`${k}:\\s+(\\d+)`))[1]);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
  // RssFile is the executable's own pages (code, read-only data): shared
  // and clean, the kernel can drop them; RssAnon is memory rootwatch made.
  return {
    cpu: ticks / 100,
    rssMb: kb("VmRSS") / 1024,
    peakMb: kb("VmHWM") / 1024,
    anonMb: kb("RssAnon") / 1024,
    fileMb: kb("RssFile") / 1024,
  };
}

async function latencyBuckets() {
  const text = await (await fetch(`http://127.0.0.1:${METRICS}/metrics`)).text();
  const out = [];
  for (const m of text.matchAll(/^rootwatch_alert_latency_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$/gm)) {
    out.push([m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}
function quantile(before, after, q) {
  const diff = after.map(([le, n], i) => [le, n - (before[i]?.[1] ?? 0)]);
  const total = diff.at(-1)?.[1] ?? 0;
  if (!total) return { total, le: NaN };
  const want = q * total;
  return { total, le: diff.find(([, n]) => n >= want)[0] };
}

// ------------------------------------------------------------------ run
start(process.execPath, [path.join(here, "emulator.mjs"), String(PORT), String(STATS)], {
  cwd: env.BENCH_HOME,
  env: { ...env, NODE_PATH: path.join(env.BENCH_HOME, "node_modules") },
});
start(process.execPath, [path.join(here, "receiver.mjs"), String(HOOK)]);
await until("the emulator", () => stats());
await until("the receiver", () => alerts().then(() => true));

const queue = (await sqs("CreateQueue", { QueueName: "bench", Attributes: { VisibilityTimeout: "120" } })).QueueUrl;
const bodies = trail.slice(0, N).map(eventbridge);
const latencyBodies = trail.slice(N, N + RATE * LAT_SECS).map(eventbridge);

// Baseline: receive and delete only, as many lanes as rootwatch's workers.
await sendAll(queue, bodies);
await stats(true);
let deleted = 0;
async function baselineLane() {
  while (deleted < N) {
    const r = await sqs("ReceiveMessage", { QueueUrl: queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 });
    const ms = r.Messages ?? [];
    if (!ms.length) continue;
    await sqs("DeleteMessageBatch", {
      QueueUrl: queue,
      Entries: ms.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
    });
    deleted += ms.length;
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, baselineLane));
const b = (await stats()).counts;
const baselineSecs = (b.DeleteMessageBatch.last - b.ReceiveMessage.first) / 1000;
const baselineRate = N / baselineSecs;

// rootwatch on the same backlog.
await sendAll(queue, bodies);
fs.writeFileSync(
  path.join(work, "e2e.toml"),
  fs.readFileSync(env.ALLOWLIST_CONFIG, "utf8") +
    `
[[sources]]
type = "sqs"
name = "bench"
queue_url = "${queue}"
concurrency = ${CONCURRENCY}
wait_time_secs = 20

[[sinks]]
type = "webhook"
name = "hook"
url = "http://127.0.0.1:${HOOK}/hook"

[server]
listen = "127.0.0.1:${METRICS}"

[throttle]
window_secs = 0
`,
);
await stats(true);
const rw = start(env.ROOTWATCH, ["run", "--config", path.join(work, "e2e.toml")], {
  env: {
    ...env,
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "bench",
    AWS_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    RUST_LOG: "warn",
  },
});
let peak = 0;
await until(
  "rootwatch to drain the queue",
  async () => {
    if (rw.exitCode !== null) throw new Error(`rootwatch exited with ${rw.exitCode}`);
    peak = Math.max(peak, proc(rw.pid).rssMb);
    return (await depth(queue)) === 0 && (await alerts()) >= expectedFindings;
  },
  3600,
);
await sleep(500);
const drained = proc(rw.pid);
const r = (await stats()).counts;
const rwSecs = (r.DeleteMessageBatch.last - r.ReceiveMessage.first) / 1000;
const rwRate = N / rwSecs;
const sqsRequests = Object.entries(r)
  .filter(([k]) => !k.startsWith("S3") && !["GetQueueAttributes"].includes(k))
  .reduce((s, [, c]) => s + c.n, 0);
const delivered = await alerts();

// Idle: long polling only.
await stats(true);
await sleep(IDLE_SECS * 1000);
const idle = (await stats()).counts;
const idleReceives = idle.ReceiveMessage?.n ?? 0;
const idlePerMinWorker = idleReceives / (IDLE_SECS / 60) / CONCURRENCY;
const idleProc = proc(rw.pid);
const idleRss = idleProc.rssMb;

// Latency at RATE events/s: received message to the first attempt to send.
const before = await latencyBuckets();
const alertsBefore = await alerts();
const t0 = performance.now();
for (let i = 0; i < latencyBodies.length; i += 10) {
  const due = t0 + (i / RATE) * 1000;
  const wait = due - performance.now();
  if (wait > 0) await sleep(wait);
  sqs("SendMessageBatch", {
    QueueUrl: queue,
    Entries: latencyBodies.slice(i, i + 10).map((b, j) => ({ Id: `l${j}`, MessageBody: b })),
  });
}
await until("the latency phase to drain", async () => (await depth(queue)) === 0, 600);
await sleep(1000);
const after = await latencyBuckets();
const p50 = quantile(before, after, 0.5);
const p99 = quantile(before, after, 0.99);
const latencyAlerts = (await alerts()) - alertsBefore;
const final = proc(rw.pid);
rw.kill("SIGTERM");
await new Promise((res) => rw.on("exit", res));

const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
const le = (x) => (Number.isFinite(x) ? `≤ ${x * 1000} ms` : "> 5 s");
console.log(`
End to end through SQS (fauxqs on 127.0.0.1), ${N} EventBridge-wrapped events, 1 per message, ${CONCURRENCY} worker(s)
| measure | receive+delete only | rootwatch | target |
|---|---|---|---|
| events/s draining the backlog | ${f(baselineRate)} | ${f(rwRate)} (${f((100 * rwRate) / baselineRate)}% of baseline) | ≥ 90% of baseline |
| SQS requests per event | ${f((b.ReceiveMessage.n + b.DeleteMessageBatch.n) / N, 3)} | ${f(sqsRequests / N, 3)} (${Object.entries(r).filter(([k]) => k !== "GetQueueAttributes").map(([k, c]) => `${k} ${c.n}`).join(", ")}) | ≤ 0.21 |
| alerts delivered / expected (replay) | | ${delivered} / ${expectedFindings} | equal |
| CPU seconds per million events | | ${f((drained.cpu / N) * 1e6, 1)} (${f(drained.cpu, 2)} s over the drain, start-up included) | reported |
| peak RSS while draining | | ${f(drained.peakMb, 1)} MB | < 64 MB |
| idle receive requests per minute per worker | | ${f(idlePerMinWorker, 2)} (${idleReceives} over ${IDLE_SECS} s) | ≤ 3 |
| RSS idle (after the drain) | | ${f(idleRss, 1)} MB (anonymous ${f(idleProc.anonMb, 1)} MB, the executable's pages ${f(idleProc.fileMb, 1)} MB) | < 20 MB |
| alert latency at ${RATE} events/s, p50 | | ${le(p50.le)} (${p50.total} alerts${Number.isFinite(expectedLatencyFindings) ? `, ${latencyAlerts} / ${expectedLatencyFindings} delivered` : ""}) | |
| alert latency at ${RATE} events/s, p99 | | ${le(p99.le)} | < 5 ms |
Latency is rootwatch_alert_latency_seconds (receive returned → first send attempt), read from its histogram buckets: a figure is the bucket bound the quantile falls under.
CPU at the end: ${f(final.cpu, 2)} s; peak RSS over the whole run: ${f(final.peakMb, 1)} MB.`);
process.exit(delivered === expectedFindings ? 0 : 1);
