#!/usr/bin/env python3
"""The smallest Python peer of `rootwatch replay`, for benchmarks that must
not flatter rootwatch: json.loads each line and the four checks a Lambda
function for this job would make, counting findings and writing nothing
per finding. Standard library only.

    python3 benches/peer_minimal.py [--config CONFIG.toml] FILE

FILE holds one CloudTrail record per line (no envelopes, no gzip, no
dedup). CONFIG is a rootwatch config; only [detect.ip_allowlist] cidrs are
read (the finding-heavy shape of gen-trail writes three). The checks:

  1. a root console sign-in (userIdentity.type Root, eventName ConsoleLogin);
  2. a root API call, and a second finding when its session was not signed
     in with MFA;
  3. a root call made with an access key (AKIA...);
  4. a sourceIPAddress outside the allow list (every record: scope "all").

On the finding-heavy shape these count what rootwatch's rules count.
Prints `peer: N event(s), K finding(s)` on stderr.
"""

import ipaddress
import json
import sys
import tomllib


def main(argv):
    cidrs = []
    if len(argv) >= 3 and argv[1] == "--config":
        with open(argv[2], "rb") as f:
            cidrs = tomllib.load(f).get("detect", {}).get("ip_allowlist", {}).get("cidrs", [])
        argv = argv[2:]
    if len(argv) != 2:
        sys.exit("usage: peer_minimal.py [--config CONFIG.toml] FILE")
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    events = findings = 0
    with open(argv[1], "rb") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            events += 1
            ui = rec.get("userIdentity") or {}
            if ui.get("type") == "Root":
                if rec.get("eventName") == "ConsoleLogin":
                    findings += 1
                else:
                    findings += 1
                    attrs = (ui.get("sessionContext") or {}).get("attributes") or {}
                    if attrs.get("mfaAuthenticated") != "true":
                        findings += 1
                    if str(ui.get("accessKeyId", "")).startswith("AKIA"):
                        findings += 1
            if nets:
                try:
                    ip = ipaddress.ip_address(rec.get("sourceIPAddress", ""))
                except ValueError:
                    continue
                if not any(ip in n for n in nets):
                    findings += 1
    print(f"peer: {events} event(s), {findings} finding(s)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
