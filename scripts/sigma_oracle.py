#!/usr/bin/env python3
"""An independent Sigma evaluator, for comparing rootwatch's Sigma matches.

Usage: sigma_oracle.py RULES_DIR FILE.jsonl...

pySigma's DuckDB backend turns each rule into SQL over a table `logs` whose
columns are the records' dotted field paths; DuckDB runs it. Prints one JSON
line {"rule": <rule id>, "eventID": <eventID or null>} per match, after the
de-duplication rootwatch applies, so the two can be compared as sets.

Where SQL and Sigma differ, the table and the queries are shaped to say what
Sigma says, each place commented below.
"""

import glob
import json
import os
import re
import sys

import duckdb
import yaml
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingPipeline
from sigma_backend_duckdb import DuckDBBackend


def flatten(prefix, value, out):
    """Dotted paths to scalars. Lists stay whole (as JSON text)."""
    if isinstance(value, dict):
        if prefix:
            # An object is also a column of its JSON text: `field|contains`
            # on an object looks inside it, as rootwatch does.
            out[prefix] = json.dumps(value, separators=(",", ":"))
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def cell(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return json.dumps(v)
    return str(v)


def event_key(r):
    """What rootwatch takes for one event: eventID, eventTime, eventName and
    account; None without an eventID."""
    eid = r.get("eventID")
    if not isinstance(eid, str) or not eid:
        return None
    ui = r.get("userIdentity") if isinstance(r.get("userIdentity"), dict) else {}
    account = r.get("recipientAccountId") or ui.get("accountId") or ""
    return (eid, str(r.get("eventTime") or ""), str(r.get("eventName") or ""), str(account))


def fields_of(detection, out):
    """The field names a rule's detection reads."""
    if isinstance(detection, dict):
        for k, v in detection.items():
            if k == "condition":
                continue
            if isinstance(v, (dict, list)) and "|" not in k:
                fields_of(v, out)
            else:
                out.add(k.split("|")[0])
                if "|fieldref" in k:
                    out.update(v if isinstance(v, list) else [v])
    elif isinstance(detection, list):
        for x in detection:
            fields_of(x, out)


def main():
    rules_dir, files = sys.argv[1], sys.argv[2:]
    rules = sorted(glob.glob(os.path.join(rules_dir, "**", "*.yml"), recursive=True))
    docs = [yaml.safe_load(open(f, encoding="utf-8")) for f in rules]
    used = {"eventID"}
    for d in docs:
        fields_of(d["detection"], used)
    spelt = {u.lower(): u for u in used}

    rows, keys = [], []
    for f in files:
        for line in open(f, encoding="utf-8"):
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            row = {}
            flatten("", record, row)
            # Sigma's field names are case-sensitive and DuckDB's column
            # names are not: a key spelt otherwise than the rules spell it
            # is another field, left out.
            row = {k: v for k, v in row.items() if spelt.get(k.lower()) == k}
            row["__seq"] = len(rows)
            rows.append(row)
            keys.append(event_key(record))

    cols = sorted(used) + ["__seq"]
    con = duckdb.connect()
    con.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" VARCHAR' for c in cols) + ")")
    con.executemany(
        "INSERT INTO logs VALUES (" + ",".join("?" * len(cols)) + ")",
        [[cell(r.get(c)) for c in cols] for r in rows],
    )

    backend = DuckDBBackend(processing_pipeline=ProcessingPipeline())
    matches = {}
    for path, doc in zip(rules, docs):
        for query in backend.convert(SigmaCollection.from_yaml(open(path, encoding="utf-8").read())):
            # Sigma compares strings case-insensitively; the backend writes a
            # plain `=` (its ILIKE for wildcards already ignores case).
            query = re.sub(
                r"""("[^"]+"|[A-Za-z_][\w.]*)='((?:[^']|'')*)'""",
                lambda m: f"lower({m.group(1)})=lower('{m.group(2)}')",
                query,
            )
            query = query.replace("SELECT * FROM", 'SELECT "__seq", "eventID" FROM', 1)
            for seq, eid in con.execute(query).fetchall():
                matches.setdefault(int(seq), []).append((doc["id"], eid))

    # As rootwatch de-duplicates: the first event with findings claims its
    # key, and a later event with the same key is dropped with its findings.
    claimed = set()
    for seq in sorted(matches):
        key = keys[seq]
        if key is not None:
            if key in claimed:
                continue
            claimed.add(key)
        for rule, eid in matches[seq]:
            print(json.dumps({"rule": rule, "eventID": eid}))


if __name__ == "__main__":
    main()
