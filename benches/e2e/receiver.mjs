// The webhook receiver for benches/e2e.sh: answers 200 to every POST and
// counts them. GET returns the count, the root console logins among them
// and the throttle summaries.
//
//   node receiver.mjs PORT
import http from "node:http";

const port = Number(process.argv[2]);
let alerts = 0;
// Root console logins seen, and throttle summaries (rule and count), for
// the noisy-key phase.
let rootLogins = 0;
const summaries = [];
http
  .createServer((req, res) => {
    if (req.method === "GET") {
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ alerts, rootLogins, summaries }));
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      alerts += 1;
      try {
        const f = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (f.rule === "root-console-login") rootLogins += 1;
        if (f.summary) summaries.push({ rule: f.rule, count: f.summary.count });
      } catch {
        // Not a finding: counted as an alert all the same.
      }
      res.statusCode = 200;
      res.end("ok");
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`receiver on 127.0.0.1:${port}`));
