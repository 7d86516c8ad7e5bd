#!/usr/bin/env bash
# The whole test suite, on a fresh machine: formatting, lints, unit tests,
# integration tests against a local moto server (installed into a virtualenv
# and started on a free loopback port here), and the deploy/ checks.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${ROOTWATCH_TEST_VENV:-$PWD/.venv-test}"
step() { printf '\n== %s\n' "$*"; }

step "moto (AWS emulator) and the OCSF validator in $venv"
# (Re)installed whenever the requirements file differs from the one the
# virtualenv was last installed from, so a new or re-pinned package lands.
stamp="$venv/.rootwatch-requirements"
if ! cmp -s scripts/test-requirements.txt "$stamp" \
  || ! "$venv/bin/python" -c 'import moto, flask, flask_cors, ocsf.v1_7_0.events, sigma, sigma_backend_duckdb, duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
  cp scripts/test-requirements.txt "$stamp"
fi
export ROOTWATCH_TEST_PYTHON="$venv/bin/python"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_log=$(mktemp -t rootwatch-moto.XXXXXX.log)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
cleanup() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "moto_server exited; its log:" >&2; cat "$moto_log" >&2; exit 1
  fi
  sleep 0.2
done
export ROOTWATCH_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
echo "moto_server listening on $ROOTWATCH_TEST_AWS_ENDPOINT"

step "Alertmanager, rsyslog (with its OpenSSL driver) and openssl for the sink tests"
# The tests start the servers themselves on loopback ports; only the
# Debian packages are needed.
# Without root (or apt-get) they cannot be installed here: locally the tests
# that need them are skipped with a SKIP line; in CI (CI=true) that fails.
packages=(prometheus-alertmanager rsyslog rsyslog-openssl openssl)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  apt_log=$(mktemp -t rootwatch-apt.XXXXXX.log)
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 \
    && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >"$apt_log" 2>&1; then
    echo "installed ${packages[*]}"
  elif [[ "${CI:-}" == true ]]; then
    tail -20 "$apt_log" >&2 || true
    echo "missing Debian packages (${packages[*]}) could not be installed (it needs root and apt-get): install them" >&2
    exit 1
  else
    echo "SKIP: the Alertmanager and syslog sink tests: Debian packages ${packages[*]} are missing and need root to install"
    export ROOTWATCH_TEST_MISSING="prometheus-alertmanager,rsyslogd,openssl"
  fi
fi
if [[ -z "${ROOTWATCH_TEST_MISSING:-}" ]]; then
  prometheus-alertmanager --version 2>&1 | head -1
  /usr/sbin/rsyslogd -v | head -1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --all-targets --locked

bin="${CARGO_TARGET_DIR:-target}/debug/rootwatch"

step "deploy checks"
ROOTWATCH_BIN="$bin" scripts/check-deploy.sh

step "smoke: the README's local run, its /metrics checked by promtool"
smoke=$(mktemp -d -t rootwatch-smoke.XXXXXX)
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/127.0.0.1:9102/127.0.0.1:$admin/" config/local.toml >"$smoke/local.toml"
"$bin" run --config "$smoke/local.toml" >"$smoke/findings.jsonl" 2>"$smoke/log.jsonl" &
rw_pid=$!
ready=no
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$admin/readyz', timeout=1)" 2>/dev/null; then
    ready=yes; break
  fi
  sleep 0.2
done
[[ $ready == yes ]] || { echo "rootwatch did not become ready; its log:"; cat "$smoke/log.jsonl"; exit 1; }
sleep 1
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$admin/metrics', timeout=5).read().decode())" >"$smoke/metrics.txt"
if command -v promtool >/dev/null 2>&1; then
  promtool check metrics <"$smoke/metrics.txt"
elif [[ "${CI:-}" == true ]]; then
  echo "promtool is missing (Debian's prometheus; scripts/check-deploy.sh installs it as root)" >&2
  exit 1
else
  echo "SKIP: promtool check metrics: promtool is not installed (Debian's prometheus, needs root)"
fi
kill -TERM "$rw_pid"
wait "$rw_pid"
python3 - "$smoke/findings.jsonl" <<'PY'
import json, sys
rules = sorted(json.loads(l)["rule"] for l in open(sys.argv[1]) if l.strip())
assert "root-console-login-without-mfa" in rules and "root-access-key-used" in rules, rules
print(f"smoke: {len(rules)} findings on stdout, exit 0 after SIGTERM")
PY
rm -rf "$smoke"
