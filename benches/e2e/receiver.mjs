// The webhook receiver for benches/e2e.sh: answers 200 to every POST and
// counts them. GET /stats returns the count.
//
//   node receiver.mjs PORT
import http from "node:http";

const port = Number(process.argv[2]);
let alerts = 0;
http
  .createServer((req, res) => {
    if (req.method === "GET") {
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ alerts }));
    }
    req.on("data", () => {});
    req.on("end", () => {
      alerts += 1;
      res.statusCode = 200;
      res.end("ok");
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`receiver on 127.0.0.1:${port}`));
