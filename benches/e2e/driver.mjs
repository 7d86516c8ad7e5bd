// End-to-end benchmark driver, started by benches/e2e.sh (read that first).
// Starts the emulator and the webhook receiver, measures a consumer that
// only receives and deletes, then rootwatch on the same preloaded queue,
// an idle phase and a paced latency phase, and prints one table.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

// Inflating on libuv's thread pool, so the baseline's lanes inflate in
// parallel as rootwatch's workers do.
const gunzip = promisify(zlib.gunzip);

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
// The trail is read as bytes and cut into lines: a backlog of a million
// events is larger than the longest string Node can hold.
function readLines(file) {
  const buf = fs.readFileSync(file);
  const lines = [];
  for (let at = 0; at < buf.length; ) {
    let end = buf.indexOf(10, at);
    if (end < 0) end = buf.length;
    if (end > at) lines.push(buf.toString("utf8", at, end));
    at = end + 1;
  }
  return lines;
}
const trail = readLines(env.TRAIL);
const expectedFindings = Number(env.EXPECTED_FINDINGS);
const expectedLatencyFindings = Number(env.EXPECTED_LATENCY_FINDINGS ?? NaN);
const work = env.WORK;
// The S3 phase: S3_EVENTS of the backlog's events (0: none) in gzip log
// files of S3_FILE_EVENTS records each, and BIG_GZIP (a path: one large
// log file) if set.
const S3_EVENTS = Math.min(Number(env.S3_EVENTS ?? N), N);
const FILE_EVENTS = Number(env.S3_FILE_EVENTS ?? 1000);
const BUCKET = "bench-trail";

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

// Waits until the queue is empty and `expected` alerts arrived since
// `since`; fails as soon as rootwatch exits. `each` runs on every poll.
async function waitDrained(what, rw, queue, since, expected, each = () => {}) {
  await until(
    what,
    async () => {
      if (rw.exitCode !== null) throw new Error(`rootwatch exited with ${rw.exitCode}`);
      each();
      return (await depth(queue)) === 0 && (await alerts()) - since >= expected;
    },
    3600,
  );
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

// Sends messages body(0) .. body(count - 1), built as they are sent.
async function sendAll(queue, count, body, parallel = 16) {
  let next = 0;
  async function lane() {
    while (next < count) {
      const from = next;
      next = Math.min(count, next + 10);
      const entries = [];
      for (let i = from; i < next; i++) entries.push({ Id: `m${i - from}`, MessageBody: body(i) });
      await sqs("SendMessageBatch", { QueueUrl: queue, Entries: entries });
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

// Starts `rootwatch run` on one SQS source, alerts to the receiver.
// `detect`: the detection part of the config (the trail's allow list by
// default); `windowSecs`: the throttle window (0: off).
function startRootwatch(name, queue, sourceExtra = "", { detect, windowSecs = 0 } = {}) {
  const config = path.join(work, `${name}.toml`);
  fs.writeFileSync(
    config,
    (detect ?? fs.readFileSync(env.ALLOWLIST_CONFIG, "utf8")) +
      `
[[sources]]
type = "sqs"
name = "${name}"
queue_url = "${queue}"
concurrency = ${CONCURRENCY}
wait_time_secs = 20
${sourceExtra}

[[sinks]]
type = "webhook"
name = "hook"
url = "http://127.0.0.1:${HOOK}/hook"

[server]
listen = "127.0.0.1:${METRICS}"

[throttle]
window_secs = ${windowSecs}
`,
  );
  return start(env.ROOTWATCH, ["run", "--config", config], {
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
}

// ------------------------------------------------------------- S3 phase
const s3url = (key = "") => `${endpoint}/${BUCKET}${key ? "/" + key : ""}`;
async function s3(method, key, body) {
  const r = await fetch(s3url(key), { method, body });
  const bytes = Buffer.from(await r.arrayBuffer());
  if (!r.ok) throw new Error(`S3 ${method} ${key}: ${r.status} ${bytes}`);
  return bytes;
}

// Objects over the emulator's 11 MiB request limit go up in parts, as the
// AWS CLI uploads large files.
async function s3PutLarge(key, body, part = 8 << 20) {
  const r = await fetch(`${s3url(key)}?uploads`, { method: "POST" });
  const id = (await r.text()).match(/<UploadId>([^<]+)<\/UploadId>/)?.[1];
  if (!r.ok || !id) throw new Error(`S3 CreateMultipartUpload ${key}: ${r.status}`);
  const parts = [];
  for (let n = 1, at = 0; at < body.length; n++, at += part) {
    const p = await fetch(`${s3url(key)}?partNumber=${n}&uploadId=${encodeURIComponent(id)}`, {
      method: "PUT",
      body: body.subarray(at, at + part),
    });
    if (!p.ok) throw new Error(`S3 UploadPart ${key} ${n}: ${p.status} ${await p.text()}`);
    parts.push(`<Part><PartNumber>${n}</PartNumber><ETag>${p.headers.get("etag")}</ETag></Part>`);
  }
  const done = await fetch(`${s3url(key)}?uploadId=${encodeURIComponent(id)}`, {
    method: "POST",
    body: `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`,
  });
  if (!done.ok) throw new Error(`S3 CompleteMultipartUpload ${key}: ${done.status} ${await done.text()}`);
}

// An S3 event notification as S3 sends it to a queue, for one object.
function notification(key, size) {
  return JSON.stringify({
    Records: [
      {
        eventVersion: "2.1",
        eventSource: "aws:s3",
        awsRegion: "us-east-1",
        eventTime: new Date().toISOString(),
        eventName: "ObjectCreated:Put",
        s3: {
          s3SchemaVersion: "1.0",
          configurationId: "trail",
          bucket: { name: BUCKET, arn: `arn:aws:s3:::${BUCKET}` },
          object: { key, size },
        },
      },
    ],
  });
}

const logKey = (n) =>
  `AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/30/111122223333_CloudTrail_us-east-1_20261130T0000Z_${String(n).padStart(6, "0")}.json.gz`;

// Runs `lanes` copies of `f` until `f` returns false.
async function lanes(n, f) {
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (await f());
    }),
  );
}

function rssSampler(pid) {
  let peak = 0;
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, proc(pid).rssMb);
    } catch {}
  }, 50);
  return () => (clearInterval(t), peak);
}

const notices = (files) => (i) => notification(files[i].key, files[i].size);

// The baseline: receive, download each object whole and inflate it,
// delete; no parsing. Events/s, the request counts and the bytes
// inflated.
async function s3Baseline(queue, files) {
  const keyOf = (m) => JSON.parse(m.Body).Records[0].s3.object.key;
  await sendAll(queue, files.length, notices(files));
  await stats(true);
  let done = 0;
  let inflated = 0;
  await lanes(CONCURRENCY, async () => {
    if (done >= files.length) return false;
    const r = await sqs("ReceiveMessage", { QueueUrl: queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 });
    const ms = r.Messages ?? [];
    for (const m of ms) {
      const n = (await gunzip(await s3("GET", keyOf(m)))).length;
      inflated += n; // after the await: `x += await …` would add to a stale x
    }
    if (ms.length)
      await sqs("DeleteMessageBatch", {
        QueueUrl: queue,
        Entries: ms.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
      });
    done += ms.length;
    return true;
  });
  const b = (await stats()).counts;
  return {
    rate: S3_EVENTS / ((b.DeleteMessageBatch.last - b.ReceiveMessage.first) / 1000),
    counts: b,
    inflated,
  };
}

// rootwatch on the same notifications, started once they are all sent
// (as the SQS phase is: a consumer that reads while they are sent would
// be timed from its first receive, an idle long poll); adds to `rows` and
// returns whether every alert came, and rootwatch, left running.
async function s3Drain(queue, files, start, baseline, rows) {
  const b = baseline.counts;
  const baselineRate = baseline.rate;
  await sendAll(queue, files.length, notices(files));
  await stats(true);
  const alerts0 = await alerts();
  const rw = start();
  const sample = rssSampler(rw.pid);
  const expected = Number(env.EXPECTED_S3_FINDINGS);
  await waitDrained("rootwatch to drain the S3 notifications", rw, queue, alerts0, expected);
  await sleep(500);
  const drainPeak = sample();
  const drained = proc(rw.pid);
  const r = (await stats()).counts;
  const rwRate = S3_EVENTS / ((r.DeleteMessageBatch.last - r.ReceiveMessage.first) / 1000);
  const delivered = (await alerts()) - alerts0;
  const requests = Object.entries(r)
    .filter(([k]) => k !== "GetQueueAttributes")
    .map(([k, c]) => `${k} ${c.n}`)
    .join(", ");
  const ok = delivered === expected;

  rows.push(
    `| events/s draining the backlog | ${f(baselineRate)} | ${f(rwRate)} (${f((100 * rwRate) / baselineRate)}% of baseline) | ≥ 90% of baseline |`,
    `| requests | ${b.ReceiveMessage.n + b.DeleteMessageBatch.n} SQS, ${b["S3 GET"]?.n ?? 0} S3 GET | ${requests} | |`,
    `| alerts delivered / expected (replay) | | ${delivered} / ${expected} | equal |`,
    `| CPU seconds per million events | | ${f((drained.cpu / S3_EVENTS) * 1e6, 1)} (${f(drained.cpu, 2)} s, start-up included) | reported |`,
    `| peak RSS while draining | | ${f(drainPeak, 1)} MB | < 64 MB |`,
  );
  return { ok, rw };
}

async function s3Phase() {
  await s3("PUT");
  const queue = (await sqs("CreateQueue", { QueueName: "bench-s3", Attributes: { VisibilityTimeout: "120" } }))
    .QueueUrl;
  const files = [];
  for (let from = 0; from < S3_EVENTS; from += FILE_EVENTS) {
    const records = trail.slice(from, Math.min(S3_EVENTS, from + FILE_EVENTS));
    files.push({ key: logKey(files.length), events: records.length, records });
  }
  let next = 0;
  let gzBytes = 0;
  await lanes(8, async () => {
    const file = files[next++];
    if (!file) return false;
    const gz = zlib.gzipSync(`{"Records":[${file.records.join(",")}]}`);
    delete file.records;
    file.size = gz.length;
    gzBytes += gz.length;
    await s3("PUT", file.key, gz);
    return true;
  });

  const rows = [];
  const baseline = files.length ? await s3Baseline(queue, files) : null;
  const start = () =>
    startRootwatch("bench-s3", queue, `max_object_bytes = 4294967296\nmax_compressed_object_bytes = 4294967296\nallowed_buckets = ["${BUCKET}"]`);
  const { ok, rw } = baseline ? await s3Drain(queue, files, start, baseline, rows) : { ok: true, rw: start() };

  let bigOk = true;
  if (env.BIG_GZIP) {
    const gz = fs.readFileSync(env.BIG_GZIP);
    const key = logKey(999999);
    await s3PutLarge(key, gz);
    // Its baseline: one download and inflate, as rootwatch reads it.
    const tb = performance.now();
    const bigInflated = (await gunzip(await s3("GET", key))).length;
    const baseSecs = (performance.now() - tb) / 1000;
    const expectedBig = Number(env.EXPECTED_BIG_FINDINGS);
    const alerts1 = await alerts();
    const cpu0 = proc(rw.pid).cpu;
    const sampleBig = rssSampler(rw.pid);
    const t0 = performance.now();
    await sendAll(queue, 1, () => notification(key, gz.length));
    await waitDrained("rootwatch to read the large log file", rw, queue, alerts1, expectedBig);
    const secs = (performance.now() - t0) / 1000;
    const bigPeak = sampleBig();
    const bigDelivered = (await alerts()) - alerts1;
    bigOk = bigDelivered === expectedBig;
    const events = Number(env.BIG_EVENTS);
    rows.push(
      `| one log file of ${f(gz.length / 1e6, 1)} MB gzip (${events} events, ${f(bigInflated / 1e6)} MB inflated): time, events/s | ${f(baseSecs, 1)} s, ${f(events / baseSecs)} events/s | ${f(secs, 1)} s, ${f(events / secs)} events/s (${f((100 * baseSecs) / secs)}% of baseline), CPU ${f(proc(rw.pid).cpu - cpu0, 2)} s | ≥ 90% of baseline |`,
      `| peak RSS reading it | | ${f(bigPeak, 1)} MB | < 64 MB |`,
      `| its alerts delivered / expected (replay) | | ${bigDelivered} / ${expectedBig} | equal |`,
    );
  }
  rw.kill("SIGTERM");
  await new Promise((res) => rw.on("exit", res));
  console.log(`
End to end through SQS and S3 (fauxqs on 127.0.0.1), ${S3_EVENTS} events in ${files.length} gzip log files (${f(gzBytes / 1e6, 1)} MB, ${f(baseline ? baseline.inflated / 1e6 : 0, 1)} MB inflated), one S3 notification per file, ${CONCURRENCY} worker(s)
| measure | receive, download, inflate, delete only | rootwatch | target |
|---|---|---|---|
${rows.join("\n")}
RSS is sampled every 50 ms.`);
  return ok && bigOk;
}

// ------------------------------------------------------- noisy-key phase
// The shipped throttle under a noisy principal: NOISY_EVENTS calls by one
// IAM user from one address outside the allow list (a CI job, a scanner,
// an attacker wanting cover), a root console login in the middle, one
// message each; once with the throttle off, once with config/example.toml's
// window (300 s). The window is ended by SIGTERM (shutdown summarises every
// open window) rather than waited for.
const NOISY = Number(env.NOISY_EVENTS ?? 30000);
const NOISY_DETECT = `[detect.ip_allowlist]
cidrs = ["203.0.113.0/24"]
scope = "all"
`;
function noisyCall(i) {
  const t = new Date(Date.UTC(2024, 4, 1, 12, 0, 0) + i * 10).toISOString().replace(/\.\d+Z$/, "Z");
  return JSON.stringify({
    eventVersion: "1.09",
    userIdentity: {
      type: "IAMUser",
      principalId: "AIDACKCEVSQ6C2EXAMPLE",
      arn: "arn:aws:iam::111122223333:user/ci-deployer",
      accountId: "111122223333",
      accessKeyId: "AKIAIOSFODNN7EXAMPLE",
      userName: "ci-deployer",
    },
    eventTime: t,
    eventSource: "s3.amazonaws.com",
    eventName: "ListBuckets",
    awsRegion: "us-east-1",
    sourceIPAddress: "198.51.100.7",
    userAgent: "aws-cli/2.15.0",
    requestParameters: null,
    responseElements: null,
    requestID: `noisy-req-${i}`,
    eventID: `noisy-${i}`,
    readOnly: true,
    eventType: "AwsApiCall",
    managementEvent: true,
    recipientAccountId: "111122223333",
    eventCategory: "Management",
  });
}
function rootLogin(id) {
  return JSON.stringify({
    eventVersion: "1.08",
    userIdentity: { type: "Root", principalId: "111122223333", arn: "arn:aws:iam::111122223333:root", accountId: "111122223333" },
    eventTime: "2024-05-01T12:30:00Z",
    eventSource: "signin.amazonaws.com",
    eventName: "ConsoleLogin",
    awsRegion: "us-east-1",
    sourceIPAddress: "203.0.113.50",
    userAgent: "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/124.0",
    requestParameters: null,
    responseElements: { ConsoleLogin: "Success" },
    additionalEventData: { LoginTo: "https://console.aws.amazon.com/console/home", MobileVersion: "No", MFAUsed: "Yes" },
    eventID: id,
    eventType: "AwsConsoleSignIn",
    recipientAccountId: "111122223333",
  });
}
const hookState = async () => (await fetch(`http://127.0.0.1:${HOOK}/`)).json();

async function noisyRun(name, windowSecs) {
  const q = (await sqs("CreateQueue", { QueueName: name, Attributes: { VisibilityTimeout: "120" } })).QueueUrl;
  const half = Math.floor(NOISY / 2);
  await sendAll(q, NOISY + 1, (i) =>
    eventbridge(i === half ? rootLogin(`root-login-${name}`) : noisyCall(i < half ? i : i - 1)),
  );
  const before = await hookState();
  const t0 = performance.now();
  const rw = startRootwatch(name, q, "", { detect: NOISY_DETECT, windowSecs });
  const alive = () => {
    if (rw.exitCode !== null) throw new Error(`rootwatch exited with ${rw.exitCode}`);
  };
  const rootSecs = await until("the root login's alert", async () => {
    alive();
    return (await hookState()).rootLogins > before.rootLogins && (performance.now() - t0) / 1000;
  });
  // With the throttle on, the one message carrying the window's summary
  // stays in flight until the window ends.
  const carriers = windowSecs > 0 ? 1 : 0;
  const drainSecs = await until(
    "the queue drained",
    async () => {
      alive();
      return (await depth(q)) <= carriers && (performance.now() - t0) / 1000;
    },
    3600,
  );
  const held = await depth(q);
  const open = await hookState();
  rw.kill("SIGTERM");
  await new Promise((res) => rw.on("exit", res));
  const after = await hookState();
  const summary = after.summaries.slice(before.summaries.length).find((x) => x.rule === "source-ip-not-allowed");
  return {
    rootSecs,
    drainSecs,
    held,
    alertsWhileOpen: open.alerts - before.alerts,
    summaryCount: summary?.count,
    left: await depth(q),
  };
}

async function noisyPhase() {
  const off = await noisyRun("noisy-off", 0);
  const on = await noisyRun("noisy-on", 300);
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
  const rootOk = on.rootSecs <= off.rootSecs + 5;
  const drainOk = on.drainSecs <= off.drainSecs * 1.1;
  const summaryOk = on.summaryCount === NOISY - 1 && on.left === 0;
  console.log(`
A noisy key through SQS (fauxqs): ${NOISY} calls by one IAM user from outside the allow list (scope "all"), a root console login at ${Math.floor(NOISY / 2)}, one message each
| measure | throttle off (window_secs = 0) | throttle on (window_secs = 300, shipped) | target |
|---|---|---|---|
| root login alerted, s after start | ${f(off.rootSecs)} | ${f(on.rootSecs)} | on ≤ off + 5 s: ${rootOk ? "met" : "NOT MET"} |
| queue drained (but the summary's carrier), s after start | ${f(off.drainSecs)} | ${f(on.drainSecs)} (${f((100 * on.drainSecs) / off.drainSecs, 0)}%) | on ≤ 110% of off: ${drainOk ? "met" : "NOT MET"} |
| messages left in flight while the window is open | ${off.held} | ${on.held} | ≤ 1 |
| alerts delivered while the window is open | ${off.alertsWhileOpen} | ${on.alertsWhileOpen} | |
| the noisy key's summary at shutdown: count | | ${on.summaryCount ?? "none"} (queue after: ${on.left}) | ${NOISY - 1}, queue empty: ${summaryOk ? "met" : "NOT MET"} |`);
  return rootOk && drainOk && summaryOk && on.held <= 1;
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
const backlog = (i) => eventbridge(trail[i]);
const latencyBodies = trail.slice(N, N + RATE * LAT_SECS).map(eventbridge);

// Baseline: receive and delete only, as many lanes as rootwatch's workers.
await sendAll(queue, N, backlog);
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
await sendAll(queue, N, backlog);
await stats(true);
const rw = startRootwatch("bench", queue);
let peak = 0;
await waitDrained("rootwatch to drain the queue", rw, queue, 0, expectedFindings, () => {
  peak = Math.max(peak, proc(rw.pid).rssMb);
});
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
let ok = delivered === expectedFindings;
if (S3_EVENTS > 0 || env.BIG_GZIP) ok = (await s3Phase()) && ok;
if (NOISY > 0) ok = (await noisyPhase()) && ok;
process.exit(ok ? 0 : 1);
