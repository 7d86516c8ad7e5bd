#!/usr/bin/env python3
"""A Lambda-style peer of `rootwatch replay`, for benchmarks: json.loads
each line and apply the same detection rules (docs/rules.md, "What it detects"), the same
envelopes (docs/sources.md, "What it reads") and the same event-key dedup
(docs/outputs.md, "Duplicates"). Standard
library only.

    python3 benches/peer.py [--config CONFIG.toml] FILE

FILE holds JSON lines (gzip is told by its magic number). CONFIG is a
rootwatch config; only [detect.ip_allowlist] and
detect.root_api_call_exclude_events are read. Prints one JSON line per
finding on stdout and `peer: N event(s), K finding(s)` on stderr, so the
benchmark can check that every engine found the same number.
"""

import collections
import gzip
import ipaddress
import json
import sys
import tomllib

SIGNIN = "signin.amazonaws.com"


def text(v):
    """A scalar read leniently, as rootwatch's `Text` does."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return None


def obj(v):
    return v if isinstance(v, dict) else None


class CidrSet:
    def __init__(self, cidrs):
        self.v4 = collections.defaultdict(set)
        self.v6 = collections.defaultdict(set)
        self.len = 0
        for c in cidrs:
            net = ipaddress.ip_network(c.strip(), strict=False)
            table = self.v4 if net.version == 4 else self.v6
            width = 32 if net.version == 4 else 128
            p = net.prefixlen
            key = int(net.network_address) >> (width - p)
            if key not in table[p]:
                self.len += 1
            table[p].add(key)
        self.v4_lens = sorted(self.v4)
        self.v6_lens = sorted(self.v6)

    def contains(self, ip):
        n = int(ip)
        if ip.version == 4:
            return any((n >> (32 - p)) in self.v4[p] for p in self.v4_lens)
        return any((n >> (128 - p)) in self.v6[p] for p in self.v6_lens)


def source_ip(rec):
    s = text(rec.get("sourceIPAddress"))
    if s is None:
        return None
    s = s.strip()
    if not s or not (s[0] in "0123456789abcdefABCDEF:"):
        return None
    if "%" in s:
        return None
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Rules:
    def __init__(self, cidrs, scope, excluded):
        self.cidrs = CidrSet(cidrs)
        self.scope = scope
        self.excluded = set(excluded)

    def evaluate(self, rec):
        ui = obj(rec.get("userIdentity")) or {}
        kind = text(ui.get("type"))
        name = text(rec.get("eventName"))
        root = kind == "Root"
        login = name == "ConsoleLogin"
        resp = obj(rec.get("responseElements"))
        result = text(resp.get("ConsoleLogin")) if resp else None
        extra = obj(rec.get("additionalEventData"))
        mfa_used = None
        if extra is not None:
            m = text(extra.get("MFAUsed"))
            if m is not None:
                mfa_used = m.lower() == "yes"
        ctx = obj(ui.get("sessionContext"))
        assumed_root = False
        session_mfa = None
        if ctx is not None:
            a = text(ctx.get("assumedRoot"))
            assumed_root = a is not None and a.lower() == "true"
            attrs = obj(ctx.get("attributes"))
            if attrs is not None:
                m = text(attrs.get("mfaAuthenticated"))
                if m is not None:
                    session_mfa = m.lower() == "true"
        invoked_by = text(ui.get("invokedBy"))
        service = text(rec.get("eventType")) == "AwsServiceEvent" or (
            bool(invoked_by) and invoked_by.lower() != SIGNIN
        )
        fired = []
        if login and root and result == "Success":
            fired.append("root-console-login")
        if login and root and result == "Failure":
            fired.append("root-console-login-failure")
        if login and root and result == "Success" and mfa_used is not True:
            fired.append("root-console-login-without-mfa")
        if login and kind == "IAMUser" and result == "Success" and mfa_used is not True:
            saml = extra is not None and bool(text(extra.get("SamlProviderArn")))
            if not saml:
                fired.append("iam-console-login-without-mfa")
        api = (
            root
            and not login
            and not service
            and not assumed_root
            and not (name is not None and name in self.excluded)
        )
        if api:
            fired.append("root-api-call")
            if session_mfa is not True:
                fired.append("root-api-call-without-mfa")
            key = text(ui.get("accessKeyId"))
            if key is not None and key.startswith("AKIA"):
                fired.append("root-access-key-used")
        if root and name == "CreateAccessKey":
            params = obj(rec.get("requestParameters"))
            if not (params is not None and text(params.get("userName"))):
                fired.append("root-access-key-created")
        if root and assumed_root:
            fired.append("root-privileged-session")
        if self.cidrs.len and (self.scope != "root" or root) and not service:
            ip = source_ip(rec)
            if ip is not None and not self.cidrs.contains(ip):
                fired.append("source-ip-not-allowed")
        return fired


def looks_like_record(d):
    return (
        text(d.get("eventVersion")) is not None
        or text(d.get("eventID")) is not None
        or (
            text(d.get("eventName")) is not None
            and (text(d.get("eventSource")) is not None or obj(d.get("userIdentity")) is not None)
        )
    )


def records(body, depth=0):
    """The CloudTrail records in one body; object references are not
    fetched (replay reads local files only)."""
    if depth > 4:
        return
    if isinstance(body, list):
        for b in body:
            yield from records(b, depth + 1)
        return
    if not isinstance(body, dict):
        return
    dt = text(body.get("detail-type"))
    if dt is not None:
        if dt.endswith("via CloudTrail"):
            d = body.get("detail")
            if isinstance(d, dict) and looks_like_record(d):
                yield d
        return
    if text(body.get("Type")) is not None:
        if text(body.get("Type")).lower() == "notification":
            m = body.get("Message")
            if isinstance(m, str):
                try:
                    inner = json.loads(m)
                except ValueError:
                    return
                yield from records(inner, depth + 1)
        return
    recs = body.get("Records")
    if isinstance(recs, list):
        for r in recs:
            if isinstance(r, dict) and not (r.get("s3") is not None and r.get("eventSource") == "aws:s3"):
                if looks_like_record(r):
                    yield r
        return
    if text(body.get("messageType")) == "DATA_MESSAGE":
        for e in body.get("logEvents") or []:
            try:
                r = json.loads(e["message"])
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(r, dict) and looks_like_record(r):
                yield r
        return
    if looks_like_record(body):
        yield body


def event_key(rec):
    eid = text(rec.get("eventID"))
    if not eid:
        return None
    ui = obj(rec.get("userIdentity")) or {}
    account = text(rec.get("recipientAccountId")) or text(ui.get("accountId")) or ""
    return (eid, text(rec.get("eventTime")) or "", text(rec.get("eventName")) or "", account)


def main(argv):
    config = {}
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--config":
        with open(args[1], "rb") as f:
            config = tomllib.load(f)
        args = args[2:]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    detect = config.get("detect", {})
    allow = detect.get("ip_allowlist", {})
    rules = Rules(allow.get("cidrs", []), allow.get("scope", "all"), detect.get("root_api_call_exclude_events", []))
    capacity = config.get("dedup", {}).get("capacity", 100_000)
    seen = collections.OrderedDict()
    events = findings = 0
    out = sys.stdout
    with open(args[0], "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        f = gzip.open(raw) if magic == b"\x1f\x8b" else raw
        for line in f:
            if not line.strip():
                continue
            try:
                body = json.loads(line)
            except ValueError:
                continue
            for rec in records(body):
                events += 1
                key = event_key(rec)
                if key is not None and key in seen:
                    continue
                fired = list(rules.evaluate(rec))
                for rule in fired:
                    findings += 1
                    out.write(json.dumps({"rule": rule, "eventID": rec.get("eventID")}) + "\n")
                # Only an event that alerted enters the cache: its repeats
                # are what dedup drops; a silent event stops nothing.
                if fired and key is not None:
                    seen[key] = None
                    seen.move_to_end(key)
                    if len(seen) > capacity:
                        seen.popitem(last=False)
    sys.stderr.write(f"peer: {events} event(s), {findings} finding(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
