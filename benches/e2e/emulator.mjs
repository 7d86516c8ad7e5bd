// The SQS/S3 emulator for benches/e2e.sh: fauxqs bound to 127.0.0.1, with
// every request counted by kind (the X-Amz-Target action for SQS, the HTTP
// method for S3) and the time of the first and last of each kind.
//
//   BENCH_HOME=DIR node emulator.mjs PORT STATS_PORT
//
// GET http://127.0.0.1:STATS_PORT/ returns the counts as JSON; POST resets
// them.
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

// fauxqs is installed under BENCH_HOME by benches/e2e.sh, not in the repository.
const { buildApp } = await import(
  pathToFileURL(path.join(process.env.BENCH_HOME, "node_modules/fauxqs/dist/app.js")).href
);

const [port, statsPort] = process.argv.slice(2).map(Number);
let counts = {};

const app = buildApp({ logger: false, host: "localhost" });
app.addHook("onRequest", (req, _reply, done) => {
  const target = req.headers["x-amz-target"];
  const kind = target ? String(target).replace(/^AmazonSQS\./, "") : `S3 ${req.method}`;
  const now = performance.now();
  const c = (counts[kind] ??= { n: 0, first: now, last: now });
  c.n += 1;
  c.last = now;
  done();
});
await app.listen({ host: "127.0.0.1", port });

http
  .createServer((req, res) => {
    if (req.method === "POST") counts = {};
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ now: performance.now(), counts }));
  })
  .listen(statsPort, "127.0.0.1", () => console.log(`emulator on 127.0.0.1:${port}`));
