#!/usr/bin/env bash
# Lint and validate everything under deploy/ plus the Dockerfile.
#
# Runs on a fresh Debian machine as root with python3, pip and apt-get:
# the tools are pip-installed into ${ROOTWATCH_TOOLS_VENV:-.venv-tools} from
# scripts/tools-requirements.txt, every package pinned by version and sha256
# (--require-hashes), and promtool comes from Debian's `prometheus` package
# when it is missing.
# Prints PASS/FAIL/SKIP per check and exits non-zero if any check failed.
# Side effect: rewrites deploy/metric-names.txt (the rootwatch_* series the
# dashboard and alert rules use; a Rust test checks they are all exported).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${ROOTWATCH_TOOLS_VENV:-.venv-tools}"
TOOLS_REQUIREMENTS="scripts/tools-requirements.txt"

# checkov findings accepted on purpose (soft-fail), each with its reason.
# Anything not listed here fails the check.
declare -A CHECKOV_ACCEPTED=(
  [CKV_K8S_21]="the kustomize base is namespace-less by design; overlays and 'helm -n' set the namespace"
  [CKV_K8S_43]="the base pins a release tag; overlays pin a digest with 'kustomize edit set image' / image.tag"
  [CKV_K8S_35]="rootwatch interpolates \${ENV} secrets into its config, so the webhook secrets are env vars from a Secret"
  [CKV_K8S_15]="immutable release tags with IfNotPresent: restarting the detector must not depend on the registry being reachable"
  [CKV_AWS_27]="the queues EventBridge writes to use SQS-managed SSE (SqsManagedSseEnabled); checkov only recognises KMS keys, and the AWS-managed SQS KMS key would block EventBridge"
  [CKV_DOCKER_2]="no HEALTHCHECK by design: Kubernetes probes /healthz and /readyz, ECS relies on the load balancer (distroless has no shell or curl)"
  [CKV_DOCKER_7]="deploy/ecs/Dockerfile takes its base image as a build argument whose default is a pinned release tag"
)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

declare -a RESULTS=()
FAILED=0

record() { # status name [detail]
  local line
  line="$(printf '%-4s  %s' "$1" "$2")"
  [[ -n "${3:-}" ]] && line+="  ($3)"
  RESULTS+=("$line")
  printf '%s\n' "$line"
  [[ "$1" == FAIL ]] && FAILED=1
  return 0
}

# run_check NAME FUNCTION: runs the function with its output indented; PASS on
# exit 0, FAIL otherwise.
# (The subshell runs outside any `if` so that its `set -e` stays in force.)
run_check() {
  local name="$1" rc; shift
  echo "==> $name"
  set +e
  ( set -euo pipefail; "$@" ) > "$WORK/out" 2>&1
  rc=$?
  set -e
  sed 's/^/    /' "$WORK/out"
  case $rc in
    0) record PASS "$name" ;;
    3) record SKIP "$name" "a tool it needs is not installed; CI=true makes this a failure" ;;
    *) record FAIL "$name" "exit $rc" ;;
  esac
}

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
TOOLS_OK=1
echo "==> installing tools into $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  if ! python3 -m venv "$VENV" > "$WORK/venv.log" 2>&1; then
    cat "$WORK/venv.log"
    echo "python3 -m venv failed; on Debian: apt-get install -y python3-venv" >&2
    TOOLS_OK=0
  fi
fi
if [[ "$TOOLS_OK" == 1 ]]; then
  if "$VENV/bin/python" -m pip install --disable-pip-version-check -q --require-hashes \
      -r "$TOOLS_REQUIREMENTS" > "$WORK/pip.log" 2>&1; then
    record PASS "install python tools" "$TOOLS_REQUIREMENTS, pinned by sha256"
  else
    tail -20 "$WORK/pip.log"
    # The hashes cover only the platforms the file's header claims: say which.
    "$VENV/bin/python" -c 'import platform as p; print("this is CPython",
      p.python_version(), "on", p.system(), p.machine(), end="; ")' || true
    echo "$TOOLS_REQUIREMENTS covers:"
    sed -n '/^# Claimed:/,/^# The tools/{/^# The tools/!p;}' "$TOOLS_REQUIREMENTS"
    record FAIL "install python tools" "pip could not install $TOOLS_REQUIREMENTS with --require-hashes"
    TOOLS_OK=0
  fi
else
  record FAIL "install python tools" "no venv"
fi
export PATH="$ROOT/$VENV/bin:$PATH"
[[ "$VENV" = /* ]] && export PATH="$VENV/bin:$PATH"
if [[ -x "$VENV/bin/python" ]]; then PY="$VENV/bin/python"; else PY="python3"; fi

if ! command -v promtool > /dev/null 2>&1; then
  echo "==> promtool missing: apt-get install -y prometheus"
  if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null 2>&1 \
      && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; } > "$WORK/apt.log" 2>&1 \
      && command -v promtool > /dev/null 2>&1; then
    record PASS "install promtool" "apt-get install prometheus"
  elif [[ "${CI:-}" == true ]]; then
    tail -20 "$WORK/apt.log" 2> /dev/null || true
    record FAIL "install promtool" "promtool could not be installed: the prometheus-rules checks cannot run"
  else
    record SKIP "install promtool" "needs root and apt-get (or install Debian's prometheus); the checks that use it are skipped"
  fi
fi

need() { # a check whose tool is absent: skipped locally (exit 3), failed in CI
  local t
  for t in "$@"; do
    if ! command -v "$t" > /dev/null 2>&1; then
      echo "required tool '$t' is not installed (see the install steps above)"
      if [[ "${CI:-}" == true ]]; then return 1; fi
      return 3
    fi
  done
}

# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

check_hadolint() {
  need hadolint
  hadolint Dockerfile
  hadolint deploy/ecs/Dockerfile
  echo "hadolint: no findings"
}

check_dockerfile_contract() {
  "$PY" - <<'EOF'
import json, re, sys
lines = []
for raw in open("Dockerfile").read().replace("\\\n", " ").splitlines():
    if raw.strip() and not raw.lstrip().startswith("#"):
        lines.append(raw.strip())
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
froms = [a for i, a in instr if i == "FROM"]
final = max(k for k, (i, _) in enumerate(instr) if i == "FROM")
runtime = instr[final:]
errors = []
if len(froms) < 2:
    errors.append("not multi-stage")
if not froms[0].startswith("rust:1"):
    errors.append(f"builder is {froms[0]!r}, expected rust:1-bookworm")
if "cargo build --release --locked" not in open("Dockerfile").read():
    errors.append("no 'cargo build --release --locked'")
users = [a for i, a in runtime if i == "USER"]
if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
    errors.append(f"runtime USER must be numeric non-root, got {users}")
if any(i == "HEALTHCHECK" for i, _ in instr):
    errors.append("HEALTHCHECK present")
if ("EXPOSE", "9102") not in runtime:
    errors.append("EXPOSE 9102 missing")
ep = [a for i, a in runtime if i == "ENTRYPOINT"]
cmd = [a for i, a in runtime if i == "CMD"]
if not ep or json.loads(ep[-1]) != ["rootwatch"]:
    errors.append(f"ENTRYPOINT {ep}")
if not cmd or json.loads(cmd[-1]) != ["run", "--config", "/etc/rootwatch/rootwatch.toml"]:
    errors.append(f"CMD {cmd}")
if not any(i == "COPY" and "/usr/local/bin/rootwatch" in a for i, a in runtime):
    errors.append("binary not copied to /usr/local/bin/rootwatch")
di = open(".dockerignore").read().split()
for pat in ("target/", ".git", ".venv*"):
    if pat not in di:
        errors.append(f".dockerignore lacks {pat}")
for e in errors:
    print("error:", e)
print(f"runtime image {froms[-1]}, user {users[-1] if users else None}")
sys.exit(1 if errors else 0)
EOF
}

check_kustomize() {
  need kubectl kubernetes-validate
  kubectl kustomize deploy/kubernetes > "$WORK/kustomize.yaml"
  kubernetes-validate --strict "$WORK/kustomize.yaml" 2>&1 | tee "$WORK/kv.txt"
  if grep -Eq '^(WARN|ERROR)' "$WORK/kv.txt"; then return 1; fi
}

check_helm_lint_schema() {
  # helm lint --strict on the defaults, then values.schema.json through Helm:
  # a misspelt key, top-level or nested, must fail lint and render alike.
  "$PY" scripts/helm_chart.py lint deploy/helm/rootwatch
  local typo
  for typo in 'imgae.tag=x' 'image.tg=x' 'image.digest=latest' 'serviceAccount.rolearn=x' \
              'serviceAccount.annotation.a=b' 'existingSecretName=x' 'extraenv[0].name=X' \
              'networkPolicy.enable=false' 'networkPolicy.extraEgres[0].ports[0].port=80' \
              'podDisruptionBudget.enable=true' 'podDisruptionBudget.maxUnavailable=one' \
              'tolerations[0].operater=Exists' 'affinity.nodeAfinity.x=y' \
              'serviceMonitor.enbled=true' 'prometheusRule.label.a=b' 'prometheusRule.thresholds.eventLag=60' \
              'grafanaDashboard.label.a=b' 'tests.enable=false' 'resources.limit.cpu=1' \
              'containerSecurityContext.readOnlyRootFileSystem=true' 'keda.queueUrl=x' \
              'keda.identityOwner=pod' 'keda.podIdentity.identityOwner=pods' 'keda.scaleOnInflight=true'; do
    if "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --set "$typo" > /dev/null 2> "$WORK/err"; then
      echo "helm rendered with a misspelt or invalid value: --set $typo"
      return 1
    fi
    grep -q "don't meet the specifications of the schema" "$WORK/err" || { cat "$WORK/err"; return 1; }
    if "$PY" scripts/helm_chart.py lint deploy/helm/rootwatch --set "$typo" > /dev/null; then
      echo "helm lint accepted a misspelt or invalid value: --set $typo"
      return 1
    fi
    echo "rejected by the schema (render and lint): --set $typo"
  done
}

check_helm_default() {
  need kubernetes-validate
  [[ -s "$WORK/kustomize.yaml" ]] || kubectl kustomize deploy/kubernetes > "$WORK/kustomize.yaml"
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --release rootwatch > "$WORK/helm.yaml"
  kubernetes-validate --strict "$WORK/helm.yaml" 2>&1 | tee "$WORK/kv.txt"
  if grep -Eq '^(WARN|ERROR)' "$WORK/kv.txt"; then return 1; fi
  "$PY" scripts/helm_chart.py compare "$WORK/kustomize.yaml" "$WORK/helm.yaml"
}

check_helm_optional() {
  need kubernetes-validate promtool
  local owner
  cat > "$WORK/optional-values.yaml" <<'YAML'
serviceMonitor:
  enabled: true
  labels: {release: prometheus}
prometheusRule:
  enabled: true
grafanaDashboard:
  enabled: true
keda:
  enabled: true
networkPolicy:
  ingressFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
nodeSelector: {kubernetes.io/os: linux}
YAML
  for owner in keda workload; do
    echo "-- serviceMonitor, prometheusRule, grafanaDashboard and keda (podIdentity.identityOwner=$owner) enabled"
    "$PY" scripts/helm_chart.py lint deploy/helm/rootwatch \
      -f "$WORK/optional-values.yaml" --set "keda.podIdentity.identityOwner=$owner"
    "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --release rootwatch \
      -f "$WORK/optional-values.yaml" --set "keda.podIdentity.identityOwner=$owner" > "$WORK/helm-all.yaml"
    kv_strict_builtin "$WORK/helm-all.yaml"
    "$PY" scripts/helm_chart.py check-crds "$WORK/helm-all.yaml" --rules-out "$WORK/helm-rules.yaml" \
      --expect ServiceMonitor --expect PrometheusRule --expect ScaledObject --expect TriggerAuthentication
    promtool check rules "$WORK/helm-rules.yaml"
  done
  cmp deploy/prometheus/alerts.yaml deploy/helm/rootwatch/files/alerts.yaml
  echo "chart's files/alerts.yaml is identical to deploy/prometheus/alerts.yaml"
  cmp deploy/grafana/rootwatch.json deploy/helm/rootwatch/files/rootwatch-dashboard.json
  echo "chart's files/rootwatch-dashboard.json is identical to deploy/grafana/rootwatch.json"
  # With default thresholds the PrometheusRule holds exactly the rules of
  # deploy/prometheus/alerts.yaml, so the promtool unit tests cover it.
  "$PY" - "$WORK/helm-rules.yaml" "$WORK/helm-all.yaml" <<'EOF'
import json, sys, yaml
want = yaml.safe_load(open("deploy/prometheus/alerts.yaml"))
got = yaml.safe_load(open(sys.argv[1]))
if got != want:
    print("error: the chart's default PrometheusRule differs from deploy/prometheus/alerts.yaml"); sys.exit(1)
print("default PrometheusRule groups == deploy/prometheus/alerts.yaml")
cms = [d for d in yaml.safe_load_all(open(sys.argv[2]))
       if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
if len(cms) != 1 or cms[0]["metadata"]["labels"].get("grafana_dashboard") != "1":
    print('error: expected one dashboard ConfigMap labelled grafana_dashboard: "1"'); sys.exit(1)
if json.loads(cms[0]["data"]["rootwatch.json"]) != json.load(open("deploy/grafana/rootwatch.json")):
    print("error: the dashboard ConfigMap does not hold deploy/grafana/rootwatch.json"); sys.exit(1)
print("dashboard ConfigMap holds deploy/grafana/rootwatch.json, labelled for the Grafana sidecar")
EOF
}

check_helm_admin_port() {
  # The container port, the prometheus.io/port annotation and the
  # NetworkPolicy follow [server] listen; without an admin server the chart
  # refuses to render (its probes and Service need it).
  local listen
  for listen in '[::]:9200' ''; do
    "$PY" - "$listen" > "$WORK/port-values.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open("deploy/helm/rootwatch/values.yaml"))["config"]
old = 'listen = "0.0.0.0:9102"'
if old not in config:
    sys.exit("the chart's default config has no " + old)
print(yaml.safe_dump({"config": config.replace(old, 'listen = "%s"' % sys.argv[1])}))
PY
    if [[ -z $listen ]]; then
      if "$PY" scripts/helm_chart.py render deploy/helm/rootwatch -f "$WORK/port-values.yaml" > /dev/null 2> "$WORK/err"; then
        echo "the chart rendered with the admin server off"
        return 1
      fi
      grep -q 'need the admin server' "$WORK/err" || { cat "$WORK/err"; return 1; }
      echo 'listen = "": refused to render'
      continue
    fi
    "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --release rootwatch \
      -f "$WORK/port-values.yaml" > "$WORK/helm-port.yaml"
    "$PY" - "$WORK/helm-port.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
np = next(d for d in docs if d["kind"] == "NetworkPolicy")
svc = next(d for d in docs if d["kind"] == "Service")
got = (
    pod["spec"]["containers"][0]["ports"][0]["containerPort"],
    pod["metadata"]["annotations"]["prometheus.io/port"],
    np["spec"]["ingress"][0]["ports"][0]["port"],
    svc["spec"]["ports"][0]["targetPort"],
)
if got != (9200, "9200", 9200, "admin"):
    sys.exit(f"listen [::]:9200 rendered containerPort, annotation, NetworkPolicy port, targetPort {got}")
print('listen = "[::]:9200": containerPort 9200, prometheus.io/port "9200", NetworkPolicy 9200, Service targetPort admin')
PY
  done
}

# kubernetes-validate --strict on a render that may hold custom resources:
# those have no schema there (it warns); everything else must pass.
kv_strict_builtin() {
  kubernetes-validate --strict "$1" 2>&1 | tee "$WORK/kv.txt"
  if grep -E '^(WARN|ERROR)' "$WORK/kv.txt" \
      | grep -qv "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\|ScaledObject\|TriggerAuthentication\) "; then
    echo "kubernetes-validate reported problems beyond the CRDs it has no schema for"
    return 1
  fi
}

# expect_render_failure MESSAGE ARGS...: the render must fail, naming MESSAGE.
expect_render_failure() {
  local msg="$1"; shift
  if "$PY" scripts/helm_chart.py render deploy/helm/rootwatch "$@" > /dev/null 2> "$WORK/err"; then
    echo "rendered, but should have failed with: $msg ($*)"
    return 1
  fi
  if ! grep -qF "$msg" "$WORK/err"; then
    echo "render failed without naming '$msg' ($*):"; cat "$WORK/err"
    return 1
  fi
  echo "refused as expected: $msg"
}

check_helm_values() {
  # Every value beyond the defaults at once, then what the chart must refuse.
  need kubernetes-validate checkov promtool
  cat > "$WORK/values-all.yaml" <<'YAML'
image:
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
serviceAccount:
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/rootwatch
existingSecret: ""
envFrom:
  - secretRef: {name: rootwatch-sinks}
extraEnv:
  - name: ROOTWATCH_HMAC_SECRET
    valueFrom: {secretKeyRef: {name: rootwatch-hmac, key: secret}}
  - name: AWS_STS_REGIONAL_ENDPOINTS
    value: regional
extraVolumes:
  - name: checkpoints
    persistentVolumeClaim: {claimName: rootwatch-checkpoints}
extraVolumeMounts:
  - name: checkpoints
    mountPath: /var/lib/rootwatch-pvc
podAnnotations: {example.com/owner: security}
podLabels: {team: security}
priorityClassName: system-cluster-critical
imagePullSecrets: [{name: regcred}]
service:
  type: NodePort
  annotations: {example.com/internal: "true"}
livenessProbe: {initialDelaySeconds: 10, periodSeconds: 20, timeoutSeconds: 3, failureThreshold: 4}
readinessProbe: {periodSeconds: 7, timeoutSeconds: 3, failureThreshold: 3, successThreshold: 2}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {app.kubernetes.io/name: rootwatch, app.kubernetes.io/instance: rootwatch}
podDisruptionBudget:
  enabled: true
  minAvailable: 1
  unhealthyPodEvictionPolicy: AlwaysAllow
networkPolicy:
  extraEgress:
    - to: [{ipBlock: {cidr: 169.254.170.23/32}}]
      ports: [{port: 80, protocol: TCP}]
    - to: [{ipBlock: {cidr: 169.254.169.254/32}}]
      ports: [{port: 80, protocol: TCP}]
prometheusRule:
  enabled: true
  runbookUrl: https://runbooks.example.com/rootwatch
  additionalRuleLabels: {team: security}
  thresholds: {eventLagSeconds: 600, checkpointAgeSeconds: 3600}
grafanaDashboard:
  enabled: true
  labels: {grafana_dashboard: "1", release: grafana}
  annotations: {grafana_folder: Security}
  namespace: monitoring
keda:
  enabled: true
  scaleOnInFlight: false
  podIdentity: {identityOwner: keda, roleArn: "arn:aws:iam::111122223333:role/keda-rootwatch"}
tests:
  sink: slack
YAML
  "$PY" scripts/helm_chart.py lint deploy/helm/rootwatch -f "$WORK/values-all.yaml"
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --release rootwatch \
    -f "$WORK/values-all.yaml" > "$WORK/helm-values.yaml"
  kv_strict_builtin "$WORK/helm-values.yaml"
  "$PY" scripts/helm_chart.py check-crds "$WORK/helm-values.yaml" --rules-out "$WORK/values-rules.yaml" \
    --expect PrometheusRule --expect ScaledObject --expect TriggerAuthentication
  promtool check rules "$WORK/values-rules.yaml"
  "$PY" scripts/helm_chart.py check-test-hook "$WORK/helm-values.yaml" --sink slack
  "$PY" - "$WORK/helm-values.yaml" "$WORK/values-rules.yaml" <<'EOF'
import sys, yaml
objs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = {}
for o in objs:
    by.setdefault(o["kind"], []).append(o)
errors = []
def req(cond, msg):
    if not cond:
        errors.append(msg)
dep = by["Deployment"][0]
pod = dep["spec"]["template"]
spec = pod["spec"]
c = spec["containers"][0]
env = {e["name"]: e for e in c["env"]}
req(c["image"] == "ghcr.io/example/rootwatch@sha256:" + "0123456789abcdef" * 4, f"image.digest: image is {c['image']}")
sa = by["ServiceAccount"][0]
req(sa["metadata"].get("annotations") == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/rootwatch"},
    "serviceAccount.annotations not on the ServiceAccount")
req(not any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "rootwatch-secrets" for e in c["env"]),
    "existingSecret empty: no env var may come from rootwatch-secrets")
req(c.get("envFrom") == [{"secretRef": {"name": "rootwatch-sinks"}}], "envFrom not on the container")
req(env.get("ROOTWATCH_HMAC_SECRET", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "rootwatch-hmac",
    "extraEnv ROOTWATCH_HMAC_SECRET missing")
req([e["name"] for e in c["env"]].count("ROOTWATCH_HMAC_SECRET") == 1, "ROOTWATCH_HMAC_SECRET set twice")
req(env.get("AWS_STS_REGIONAL_ENDPOINTS", {}).get("value") == "regional", "extraEnv AWS_STS_REGIONAL_ENDPOINTS missing")
req({"name": "checkpoints", "persistentVolumeClaim": {"claimName": "rootwatch-checkpoints"}} in spec["volumes"],
    "extraVolumes missing")
req({"name": "checkpoints", "mountPath": "/var/lib/rootwatch-pvc"} in c["volumeMounts"], "extraVolumeMounts missing")
req(pod["metadata"]["annotations"].get("example.com/owner") == "security", "podAnnotations missing")
req("checksum/config" in pod["metadata"]["annotations"], "podAnnotations replaced the chart's own")
req(pod["metadata"]["labels"].get("team") == "security", "podLabels missing")
req(pod["metadata"]["labels"].get("app.kubernetes.io/name") == "rootwatch", "podLabels broke the selector labels")
req(spec.get("priorityClassName") == "system-cluster-critical", "priorityClassName missing")
req(spec.get("imagePullSecrets") == [{"name": "regcred"}], "imagePullSecrets missing")
req(c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "admin"}, "initialDelaySeconds": 10,
                           "periodSeconds": 20, "timeoutSeconds": 3, "failureThreshold": 4}, "livenessProbe timings")
req(c["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 7,
                            "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 2}, "readinessProbe timings")
svc = by["Service"][0]
req(svc["spec"]["type"] == "NodePort" and svc["metadata"].get("annotations") == {"example.com/internal": "true"},
    "service.type and service.annotations")
req((spec.get("topologySpreadConstraints") or [{}])[0].get("topologyKey") == "topology.kubernetes.io/zone",
    "topologySpreadConstraints missing")
pdb = by.get("PodDisruptionBudget", [])
req(len(pdb) == 1 and pdb[0]["spec"].get("minAvailable") == 1 and "maxUnavailable" not in pdb[0]["spec"]
    and pdb[0]["spec"]["selector"] == dep["spec"]["selector"]
    and pdb[0]["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow",
    "podDisruptionBudget: minAvailable 1 and AlwaysAllow on the Deployment's selector")
nps = {n["metadata"]["name"]: n for n in by["NetworkPolicy"]}
for name in ("rootwatch", "rootwatch-test-alert"):
    cidrs = [t["ipBlock"]["cidr"] for r in nps[name]["spec"]["egress"] for t in r.get("to", [])]
    req(cidrs == ["169.254.170.23/32", "169.254.169.254/32"], f"NetworkPolicy {name}: networkPolicy.extraEgress missing")
rules = [r for g in yaml.safe_load(open(sys.argv[2]))["groups"] for r in g["rules"]]
byname = {r["alert"]: r for r in rules}
req(byname["RootwatchEventLagHigh"]["expr"].rstrip().endswith("> 600"), "thresholds.eventLagSeconds not applied")
req(byname["RootwatchCheckpointStale"]["expr"].rstrip().endswith("> 3600"), "thresholds.checkpointAgeSeconds not applied")
for r in rules:
    req(r["annotations"].get("runbook_url") == "https://runbooks.example.com/rootwatch#" + r["alert"].lower(),
        f"{r['alert']}: runbook_url missing")
    req(r["labels"].get("team") == "security" and r["labels"].get("severity") in ("critical", "warning"),
        f"{r['alert']}: additionalRuleLabels missing or severity lost")
dash = [m for m in by["ConfigMap"] if m["metadata"]["name"] == "rootwatch-dashboard"]
req(len(dash) == 1 and dash[0]["metadata"].get("namespace") == "monitoring"
    and dash[0]["metadata"]["labels"].get("release") == "grafana"
    and dash[0]["metadata"].get("annotations") == {"grafana_folder": "Security"},
    "grafanaDashboard labels/annotations/namespace")
so = by["ScaledObject"][0]["spec"]["triggers"][0]["metadata"]
req(so.get("scaleOnInFlight") == "false", "keda.scaleOnInFlight not false")
ta = by["TriggerAuthentication"][0]["spec"]["podIdentity"]
req(ta == {"provider": "aws", "identityOwner": "keda", "roleArn": "arn:aws:iam::111122223333:role/keda-rootwatch"},
    f"keda.podIdentity: {ta}")
req("replicas" not in dep["spec"], "Deployment sets replicas under KEDA")
for e in errors:
    print("error:", e)
if not errors:
    print(f"{len(objs)} objects; every non-default value reached its object")
sys.exit(1 if errors else 0)
EOF
  # checkov on the built-in kinds of this render (the custom resources are
  # not its business).
  export BC_SKIP_MAPPING=TRUE
  mkdir -p "$WORK/values-render"
  "$PY" - "$WORK/helm-values.yaml" "$WORK/values-render/rootwatch.yaml" <<'EOF'
import sys, yaml
builtin = ("v1", "apps/v1", "policy/v1", "networking.k8s.io/v1")
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["apiVersion"] in builtin]
with open(sys.argv[2], "w") as fh:
    yaml.safe_dump_all(docs, fh, sort_keys=False)
EOF
  checkov_run "rendered Helm chart, every value set" --framework kubernetes -d "$WORK/values-render"

  echo "-- refusals and optional parts"
  # The commented cloudwatch_logs example of values.yaml, enabled: file
  # checkpoints (checkpoint_path), then a DynamoDB checkpoint_table instead.
  "$PY" - "$WORK" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open("deploy/helm/rootwatch/values.yaml"))["config"]
example = '# [[sources]]\n# type = "cloudwatch_logs"\n# log_groups'
if example not in cfg:
    print("error: values.yaml config lost its commented cloudwatch_logs example"); sys.exit(1)
cw_file = cfg.replace(example, '[[sources]]\ntype = "cloudwatch_logs"\nlog_groups').replace("# checkpoint_path", "checkpoint_path")
cw_table = cw_file.replace('checkpoint_path = "/var/lib/rootwatch/cloudwatch-checkpoints.json"',
                           'checkpoint_table = "rootwatch-checkpoints"')
if cw_table == cw_file:
    print("error: no checkpoint_path line to replace"); sys.exit(1)
for name, text in (("cw-file", cw_file), ("cw-table", cw_table)):
    with open(f"{sys.argv[1]}/{name}.yaml", "w") as fh:
        yaml.safe_dump({"config": text}, fh, default_style="|")
EOF
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch -f "$WORK/cw-file.yaml" > /dev/null
  echo "a file-checkpoint cloudwatch_logs source without KEDA renders"
  expect_render_failure "keda.enabled cannot be used with a cloudwatch_logs source that keeps file checkpoints" \
    -f "$WORK/cw-file.yaml" --set keda.enabled=true
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch -f "$WORK/cw-table.yaml" --set keda.enabled=true \
    > "$WORK/cw-table-render.yaml"
  grep -q 'checkpoint_table = "rootwatch-checkpoints"' "$WORK/cw-table-render.yaml"
  grep -q '^kind: ScaledObject' "$WORK/cw-table-render.yaml"
  echo "KEDA with a checkpoint_table cloudwatch_logs source renders its ScaledObject"
  expect_render_failure "config interpolates SLACK_WEBHOOK_URL, PD_ROUTING_KEY, SOC_WEBHOOK_URL, ROOTWATCH_HMAC_SECRET, which nothing supplies" \
    --set existingSecret=
  expect_render_failure "keda.podIdentity.roleArn is for identityOwner keda" \
    --set keda.enabled=true --set keda.podIdentity.identityOwner=workload \
    --set keda.podIdentity.roleArn=arn:aws:iam::111122223333:role/keda
  # A config that interpolates nothing needs no Secret at all.
  cat > "$WORK/no-secrets.yaml" <<'YAML'
existingSecret: ""
config: |
  [[sources]]
  type = "sqs"
  queue_url = "https://sqs.us-east-1.amazonaws.com/111122223333/rootwatch"

  [[sinks]]
  type = "stdout"
YAML
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch -f "$WORK/no-secrets.yaml" > "$WORK/no-secrets-render.yaml"
  if grep -q 'secretKeyRef' "$WORK/no-secrets-render.yaml"; then
    echo "a config without \${VAR} still references a Secret"; return 1
  fi
  echo "a config that interpolates nothing renders without any Secret"
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch --set tests.enabled=false > "$WORK/no-tests.yaml"
  if grep -q 'helm.sh/hook' "$WORK/no-tests.yaml"; then
    echo "tests.enabled=false still renders the test hook"; return 1
  fi
  echo "tests.enabled=false renders no test hook"
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch > "$WORK/defaults.yaml"
  "$PY" scripts/helm_chart.py check-test-hook "$WORK/defaults.yaml"
}

check_configs() {
  "$PY" - <<'EOF'
import json, sys, tomllib, yaml
errors = []
k8s = tomllib.load(open("deploy/kubernetes/rootwatch.toml", "rb"))
ecs = tomllib.load(open("deploy/ecs/rootwatch.toml", "rb"))
vals = yaml.safe_load(open("deploy/helm/rootwatch/values.yaml"))
helm = tomllib.loads(vals["config"])
if vals["config"] != open("deploy/kubernetes/rootwatch.toml").read():
    errors.append("helm values.yaml config differs from deploy/kubernetes/rootwatch.toml")
if ecs != k8s:
    errors.append("deploy/ecs/rootwatch.toml differs (beyond comments) from the kubernetes one")
if k8s.get("server", {}).get("listen", "0.0.0.0:9102") != "0.0.0.0:9102":
    errors.append("server.listen must be 0.0.0.0:9102")
dep = [d for d in yaml.safe_load_all(open("deploy/kubernetes/deployment.yaml")) if d][0]
td = json.load(open("deploy/ecs/task-definition.json"))
env_needed = {"SLACK_WEBHOOK_URL", "PD_ROUTING_KEY", "SOC_WEBHOOK_URL", "ROOTWATCH_HMAC_SECRET"}
import re
live = "".join(l for l in open("deploy/kubernetes/rootwatch.toml") if not l.lstrip().startswith("#"))
used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", live))
if used != env_needed:
    errors.append(f"config interpolates {sorted(used)}, expected {sorted(env_needed)}")
k8s_env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
ecs_env = {s["name"] for s in td["containerDefinitions"][0]["secrets"]}
for where, got in (("Deployment", k8s_env), ("ECS task", ecs_env)):
    if got != env_needed:
        errors.append(f"{where} secrets {sorted(got)} != {sorted(env_needed)}")
for e in errors:
    print("error:", e)
print("TOML parses; the copies agree; secrets as expected")
sys.exit(1 if errors else 0)
EOF
}

check_config_binary() {
  # Optional: validate the shipped configs with a built binary, named
  # explicitly (a stale binary under target/ would prove nothing), e.g.
  #   ROOTWATCH_BIN=target/release/rootwatch scripts/check-deploy.sh
  local bin="${ROOTWATCH_BIN:-}"
  if [[ -z "$bin" ]]; then
    echo "ROOTWATCH_BIN is not set; skipped"
    return 3
  fi
  if [[ ! -x "$bin" ]]; then
    echo "ROOTWATCH_BIN=$bin is not an executable"
    return 1
  fi
  SLACK_WEBHOOK_URL=https://hooks.example.invalid/x PD_ROUTING_KEY=0123456789abcdef0123456789abcdef \
  SOC_WEBHOOK_URL=https://soc.example.invalid/x ROOTWATCH_HMAC_SECRET=x \
    "$bin" check-config deploy/kubernetes/rootwatch.toml
  SLACK_WEBHOOK_URL=https://hooks.example.invalid/x PD_ROUTING_KEY=0123456789abcdef0123456789abcdef \
  SOC_WEBHOOK_URL=https://soc.example.invalid/x ROOTWATCH_HMAC_SECRET=x \
    "$bin" check-config deploy/ecs/rootwatch.toml
}

check_cfn() {
  need cfn-lint
  cfn-lint deploy/aws/*.yaml
  "$PY" - <<'EOF'
import sys, yaml
# Short-form intrinsics as their long form: !Ref X -> {"Ref": "X"},
# !GetAtt A.B -> {"Fn::GetAtt": "A.B"}, !If [...] -> {"Fn::If": [...]}.
class L(yaml.SafeLoader): pass
def intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {("Ref" if suffix in ("Ref", "Condition") else "Fn::" + suffix): value}
L.add_multi_constructor("!", intrinsic)
def load(path):
    return yaml.load(open(path), Loader=L)
errors = []
def req(cond, msg):
    if not cond:
        errors.append(msg)
def as_list(x):
    return x if isinstance(x, list) else [x]
def statements(doc):
    out = []
    for st in as_list(doc["Statement"]):
        if isinstance(st, dict) and "Fn::If" in st:
            out += [b for b in st["Fn::If"][1:] if isinstance(b, dict) and "Ref" not in b]
        else:
            out.append(st)
    return out
def actions(doc):
    return {a for st in statements(doc) for a in as_list(st["Action"])}
def queue_pair(where, r, queue, dlq):
    q = r[queue]["Properties"]
    req(q.get("VisibilityTimeout") == 120 and q.get("ReceiveMessageWaitTimeSeconds") == 20,
        f"{where}: {queue} must have VisibilityTimeout 120 and ReceiveMessageWaitTimeSeconds 20")
    req(q.get("RedrivePolicy", {}).get("deadLetterTargetArn") == {"Fn::GetAtt": f"{dlq}.Arn"},
        f"{where}: {queue} must redrive to {dlq}")
    req(r[dlq]["Properties"].get("MessageRetentionPeriod") == 1209600, f"{where}: {dlq} retention must be 14 days")
def alarms(where, r, queue, dlq):
    got = {(a["Properties"]["MetricName"], a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"],
            a["Properties"]["ComparisonOperator"])
           for a in r.values() if a["Type"] == "AWS::CloudWatch::Alarm"}
    if dlq:
        req(("ApproximateNumberOfMessagesVisible", f"{dlq}.QueueName", "GreaterThanThreshold") in got,
            f"{where}: no alarm on {dlq} depth")
        req(any(a["Properties"].get("Threshold") == 0 for a in r.values()
                if a["Type"] == "AWS::CloudWatch::Alarm"
                and a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"),
            f"{where}: the DLQ depth alarm must fire above 0")
    if queue:
        req(("ApproximateAgeOfOldestMessage", f"{queue}.QueueName", "GreaterThanThreshold") in got,
            f"{where}: no alarm on the age of {queue}'s oldest message")
DETAIL_TYPES = ["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail"]

# The single-account template.
t = load("deploy/aws/cloudtrail-to-sqs.yaml")
r = t["Resources"]
queue_pair("cloudtrail-to-sqs", r, "Queue", "DeadLetterQueue")
req(t["Parameters"]["MaxReceiveCount"]["Default"] == 5, "cloudtrail-to-sqs: MaxReceiveCount default must be 5")
dt = r["CloudTrailRule"]["Properties"]["EventPattern"]["detail-type"]
req(sorted(dt) == DETAIL_TYPES, f"cloudtrail-to-sqs: rule detail-types {dt}")
req({"QueueUrl", "QueueArn", "DLQ"} <= set(t["Outputs"]), "cloudtrail-to-sqs: outputs QueueUrl, QueueArn, DLQ required")

# Layout A: organisation trail bucket -> SQS in the log-archive account.
w = "org-trail-log-archive"
t = load("deploy/aws/org-trail-log-archive.yaml")
r = t["Resources"]
queue_pair(w, r, "Queue", "DeadLetterQueue")
alarms(w, r, "Queue", "DeadLetterQueue")
allow = [s for s in statements(r["QueuePolicy"]["Properties"]["PolicyDocument"]) if s["Effect"] == "Allow"]
req(len(allow) == 1 and allow[0]["Principal"] == {"Service": "s3.amazonaws.com"} and allow[0]["Action"] == "sqs:SendMessage"
    and "TrailBucketName" in str(allow[0]["Condition"]["ArnEquals"]["aws:SourceArn"])
    and allow[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"},
    f"{w}: the queue policy must let only the trail bucket of this account send")
role = r["ReaderRole"]["Properties"]
trust = statements(role["AssumeRolePolicyDocument"])
req(len(trust) == 1 and trust[0]["Principal"] == {"AWS": {"Ref": "RootwatchPrincipalArn"}}
    and trust[0]["Condition"]["StringEquals"]["sts:ExternalId"] == {"Ref": "ExternalId"},
    f"{w}: the reader role must trust only RootwatchPrincipalArn, with sts:ExternalId")
req(t["Parameters"]["ExternalId"].get("NoEcho") is True, f"{w}: ExternalId must be NoEcho")
pol = role["Policies"][0]["PolicyDocument"]
req(actions(pol) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                     "sqs:GetQueueAttributes", "s3:GetObject", "kms:Decrypt"}, f"{w}: reader actions {sorted(actions(pol))}")
for st in statements(pol):
    if st["Action"] == "kms:Decrypt":
        req("kms:ViaService" in st.get("Condition", {}).get("StringEquals", {}), f"{w}: kms:Decrypt only via a service")
req({"QueueUrl", "ReaderRoleArn", "DLQ"} <= set(t["Outputs"]), f"{w}: outputs QueueUrl, ReaderRoleArn, DLQ required")

# Layout B, member side (StackSet).
w = "member-events-stackset"
t = load("deploy/aws/member-events-stackset.yaml")
r = t["Resources"]
rule = r["ForwardRule"]["Properties"]
req(rule["EventBusName"] == "default", f"{w}: the rule must be on the default bus")
root_only, everything = rule["EventPattern"]["Fn::If"][1:]
req(rule["EventPattern"]["Fn::If"][0] == "Root", f"{w}: the pattern must depend on RootOnly")
req(sorted(everything["detail-type"]) == DETAIL_TYPES and set(everything) == {"detail-type"}, f"{w}: full pattern {everything}")
req(sorted(root_only["detail-type"]) == DETAIL_TYPES and root_only.get("detail") == {"userIdentity": {"type": ["Root"]}},
    f"{w}: root-only pattern {root_only}")
tgt = rule["Targets"][0]
req(tgt["Arn"] == {"Ref": "CentralEventBusArn"} and tgt["RoleArn"] == {"Fn::GetAtt": "ForwardRole.Arn"}
    and "DeadLetterConfig" in tgt, f"{w}: the target must be the central bus, through ForwardRole, with a DLQ")
fpol = r["ForwardRole"]["Properties"]["Policies"][0]["PolicyDocument"]
req(actions(fpol) == {"events:PutEvents"} and all(s["Resource"] == {"Ref": "CentralEventBusArn"} for s in statements(fpol)),
    f"{w}: the forward role may only PutEvents on the central bus")
req(not any("RoleName" in x.get("Properties", {}) or "QueueName" in x.get("Properties", {}) for x in r.values()),
    f"{w}: no fixed names (a StackSet deploys it in several Regions of one account)")
alarms(w, r, None, "ForwardDeadLetterQueue")

# Layout B, central side.
w = "central-events"
t = load("deploy/aws/central-events.yaml")
r = t["Resources"]
queue_pair(w, r, "Queue", "DeadLetterQueue")
alarms(w, r, "Queue", "DeadLetterQueue")
bp = r["EventBusPolicy"]["Properties"]["Statement"]
req(bp["Action"] == "events:PutEvents" and bp["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == {"Ref": "OrganizationId"},
    f"{w}: the bus policy must allow PutEvents to the organisation only")
crule = r["CentralRule"]["Properties"]
req(crule["EventBusName"] == {"Ref": "EventBus"}, f"{w}: the rule must be on the central bus")
req(sorted(crule["EventPattern"]["detail-type"]) == DETAIL_TYPES, f"{w}: rule detail-types")
req(crule["Targets"][0]["Arn"] == {"Fn::GetAtt": "Queue.Arn"}
    and crule["Targets"][0]["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": "DeadLetterQueue.Arn"},
    f"{w}: the rule must target the queue, with the DLQ")
req({"EventBusArn", "QueueUrl", "QueueArn", "DLQ"} <= set(t["Outputs"]), f"{w}: outputs EventBusArn, QueueUrl, QueueArn, DLQ")

# DynamoDB checkpoints.
w = "checkpoint-table"
t = load("deploy/aws/checkpoint-table.yaml")
r = t["Resources"]
tb = r["Table"]["Properties"]
req(tb["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    and tb["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}],
    f"{w}: the only key must be the string partition key pk")
req(tb["BillingMode"] == "PAY_PER_REQUEST", f"{w}: PAY_PER_REQUEST")
req(tb["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, f"{w}: point-in-time recovery")
req(tb["SSESpecification"]["SSEEnabled"] is True, f"{w}: SSE")
req(r["Table"].get("DeletionPolicy") == "Retain", f"{w}: the table must be retained")
tp = r["RootwatchCheckpointPolicy"]["Properties"]["PolicyDocument"]
req(actions(tp) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query", "dynamodb:Scan"}, f"{w}: policy actions {sorted(actions(tp))}")
req(all(s["Resource"] == {"Fn::GetAtt": "Table.Arn"} for s in statements(tp)), f"{w}: the policy must name the table only")

for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
EOF
  echo "cfn-lint: no findings; queues, DLQs, rules, bus policy, roles, alarms, table and outputs as required"
}

check_promtool() {
  need promtool
  promtool check rules deploy/prometheus/alerts.yaml
  promtool test rules deploy/prometheus/alerts_test.yaml
  "$PY" - <<'EOF'
import sys, yaml
want = {"RootwatchDown", "RootwatchDeliveriesFailing", "RootwatchEventLagHigh",
        "RootwatchDecodeErrors", "RootwatchNoEventsReceived", "RootwatchCheckpointStale",
        "RootwatchSourceDown"}
got = {r["alert"] for g in yaml.safe_load(open("deploy/prometheus/alerts.yaml"))["groups"] for r in g["rules"] if "alert" in r}
missing = want - got
print("alerts:", ", ".join(sorted(got)))
if missing:
    print("missing alerts:", sorted(missing)); sys.exit(1)
EOF
}

check_ecs() {
  "$PY" - <<'EOF'
import json, re, sys
errors = []
td = json.load(open("deploy/ecs/task-definition.json"))
def req(cond, msg):
    if not cond:
        errors.append(msg)
req(td.get("requiresCompatibilities") == ["FARGATE"], "requiresCompatibilities must be [FARGATE]")
req(td.get("networkMode") == "awsvpc", "networkMode must be awsvpc")
req(td.get("cpu") == "256" and td.get("memory") == "512", "cpu 256 / memory 512")
req(bool(td.get("executionRoleArn")) and bool(td.get("taskRoleArn")), "executionRoleArn and taskRoleArn required")
cds = td["containerDefinitions"]
main = [c for c in cds if c["name"] == "rootwatch"]
req(len(main) == 1, "one container named rootwatch")
c = main[0]
req(c.get("readonlyRootFilesystem") is True, "readonlyRootFilesystem must be true")
user = str(c.get("user", ""))
m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
req(bool(m) and int(m.group(1)) != 0, f"user must be a numeric non-root uid, got {user!r}")
req(any(p.get("containerPort") == 9102 for p in c.get("portMappings", [])), "portMappings must expose 9102")
hc = c.get("healthCheck", {})
# The distroless image has no shell and no curl: the binary checks itself.
# ECS replaces an unhealthy task; during an upstream outage a new task would
# not reach the queue either, so a degraded daemon counts as healthy.
req(hc.get("command") == ["CMD", "/usr/local/bin/rootwatch", "healthcheck", "--allow-degraded"],
    "healthCheck.command must be [CMD, /usr/local/bin/rootwatch, healthcheck, --allow-degraded]")
req(2 < hc.get("timeout", 0) <= hc.get("interval", 0), "healthCheck.timeout must exceed the 2 s request timeout and not the interval")
req(hc.get("retries", 0) >= 2 and hc.get("startPeriod", 0) >= 30, "healthCheck needs retries >= 2 and startPeriod >= 30")
req(c.get("logConfiguration", {}).get("logDriver") == "awslogs", "logConfiguration must use awslogs")
req(all(s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in c.get("secrets", [])), "secrets must come from Secrets Manager ARNs")
vols = {v["name"] for v in td.get("volumes", [])}
req(any(mp["containerPath"] == "/var/lib/rootwatch" and mp["sourceVolume"] in vols for mp in c.get("mountPoints", [])),
    "a task volume must be mounted at /var/lib/rootwatch")
req(not c.get("privileged"), "privileged not allowed")

want_actions = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes", "s3:GetObject", "kms:Decrypt",
                "logs:FilterLogEvents", "logs:DescribeLogGroups", "sqs:SendMessage"}
pol = json.load(open("deploy/ecs/task-role-policy.json"))
got = set()
for st in pol["Statement"]:
    acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
    ress = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
    req(st["Effect"] == "Allow", f"{st.get('Sid')}: only Allow statements expected")
    req("NotAction" not in st and "NotResource" not in st, f"{st.get('Sid')}: NotAction/NotResource not allowed")
    for a in acts:
        req("*" not in a, f"{st.get('Sid')}: wildcard action {a}")
        got.add(a)
    for r in ress:
        req(r != "*" and r.startswith(("arn:aws:", "${")), f"{st.get('Sid')}: resource must be a scoped ARN, got {r}")
req(got == want_actions, f"task role actions {sorted(got)} != {sorted(want_actions)}")
ex = json.load(open("deploy/ecs/execution-role-policy.json"))
for st in ex["Statement"]:
    ress = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
    acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
    for a in acts:
        req("*" not in a, f"execution role: wildcard action {a}")
    if "*" in ress:
        # the only action AWS requires on "*"
        req(acts == ["ecr:GetAuthorizationToken"], f"execution role: '*' resource only for ecr:GetAuthorizationToken, got {acts}")
for e in errors:
    print("error:", e)
print(f"task definition: {c['image']} as user {user}, readonlyRootFilesystem, port 9102; policy actions: {len(got)}")
sys.exit(1 if errors else 0)
EOF
}

check_shutdown_margins() {
  # After SIGTERM rootwatch takes up to [shutdown] grace_secs to finish
  # deliveries and deletes, then up to HAND_BACK (src/app.rs) to hand
  # unfinished SQS messages back. The orchestrator's SIGKILL must come at
  # least MARGIN seconds after both, in every shipped manifest.
  "$PY" - "$PY" <<'EOF'
import glob, json, re, subprocess, sys, tomllib, yaml
MARGIN = 5
ECS_MAX_STOP_TIMEOUT = 120
errors = []
app = open("src/app.rs").read()
m = re.search(r"const HAND_BACK: Duration = Duration::from_secs\((\d+)\);", app)
if not m:
    print("error: HAND_BACK not found in src/app.rs"); sys.exit(1)
hand_back = int(m.group(1))
m = re.search(r"RawShutdown \{ grace_secs: (\d+) \}", open("src/config/mod.rs").read())
if not m:
    print("error: the default grace_secs not found in src/config/mod.rs"); sys.exit(1)
default_grace = int(m.group(1))

def grace_of(toml_text):
    return tomllib.loads(toml_text).get("shutdown", {}).get("grace_secs", default_grace)

def check(where, config_name, grace, timeout_name, timeout):
    need = grace + hand_back + MARGIN
    verdict = "ok" if timeout >= need else "TOO SHORT"
    print(f"{where}: {config_name} grace_secs {grace} + hand-back {hand_back} + margin {MARGIN} = {need} <= {timeout_name} {timeout}: {verdict}")
    if timeout < need:
        errors.append(f"{where}: {timeout_name} {timeout} < grace_secs {grace} + {hand_back} + {MARGIN}")

# Kubernetes (kustomize base); the pod default is 30 s.
dep = [d for d in yaml.safe_load_all(open("deploy/kubernetes/deployment.yaml")) if d and d.get("kind") == "Deployment"][0]
check("kustomize", "deploy/kubernetes/rootwatch.toml", grace_of(open("deploy/kubernetes/rootwatch.toml").read()),
      "terminationGracePeriodSeconds", dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))

# Helm: the defaults, a config with a longer grace, and an explicit value
# that leaves no margin (the chart must refuse it).
def helm(*args):
    return subprocess.run([sys.argv[1], "scripts/helm_chart.py", "render", "deploy/helm/rootwatch", *args],
                          capture_output=True, text=True)
def helm_tgps(out):
    for d in yaml.safe_load_all(out):
        if d and d.get("kind") == "Deployment":
            return d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
vals = yaml.safe_load(open("deploy/helm/rootwatch/values.yaml"))
r = helm()
if r.returncode:
    errors.append(f"helm render failed: {r.stderr.strip()}")
else:
    check("helm (defaults)", "values config", grace_of(vals["config"]), "terminationGracePeriodSeconds", helm_tgps(r.stdout))
import tempfile, os
with tempfile.TemporaryDirectory() as tmp:
    longer = os.path.join(tmp, "longer.yaml")
    with open(longer, "w") as fh:
        yaml.safe_dump({"config": vals["config"].replace("grace_secs = 25", "grace_secs = 90")}, fh)
    r = helm("-f", longer)
    if r.returncode:
        errors.append(f"helm render with grace_secs = 90 failed: {r.stderr.strip()}")
    else:
        check("helm (grace_secs = 90)", "values config", 90, "terminationGracePeriodSeconds", helm_tgps(r.stdout))
r = helm("--set", f"terminationGracePeriodSeconds={grace_of(vals['config']) + hand_back}")
if r.returncode == 0 or "terminationGracePeriodSeconds must be at least" not in r.stderr:
    errors.append("helm: an explicit terminationGracePeriodSeconds without margin must fail the render")
else:
    print("helm: an explicit terminationGracePeriodSeconds without margin fails the render")

# ECS: stopTimeout defaults to 30 s and can be at most 120 s.
def ecs_check(where, stop):
    check(where, "deploy/ecs/rootwatch.toml", grace_of(open("deploy/ecs/rootwatch.toml").read()), "stopTimeout", stop)
    if stop > ECS_MAX_STOP_TIMEOUT:
        errors.append(f"{where}: stopTimeout {stop} is over ECS's maximum {ECS_MAX_STOP_TIMEOUT}")
td = json.load(open("deploy/ecs/task-definition.json"))
for c in td["containerDefinitions"]:
    if c["name"] == "rootwatch":
        ecs_check("ECS task definition", c.get("stopTimeout", 30))

# CloudFormation templates that define an ECS task for rootwatch.
class L(yaml.SafeLoader): pass
L.add_multi_constructor("!", lambda l, s, n: None)
for path in sorted(glob.glob("deploy/aws/*.yaml")):
    t = yaml.load(open(path), Loader=L) or {}
    for name, res in (t.get("Resources") or {}).items():
        if res.get("Type") == "AWS::ECS::TaskDefinition":
            for c in res.get("Properties", {}).get("ContainerDefinitions", []):
                ecs_check(f"{path} {name}", c.get("StopTimeout", 30))
for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
EOF
}

checkov_run() { # label, then checkov arguments
  local label="$1"; shift
  local skip
  skip="$(IFS=,; echo "${!CHECKOV_ACCEPTED[*]}")"
  echo "-- $label"
  checkov --quiet --compact --skip-download --soft-fail-on "$skip" "$@" > "$WORK/checkov.txt" 2>&1 || {
    cat "$WORK/checkov.txt"; return 1; }
  # Show what was accepted, and make sure nothing else failed.
  local id ids
  ids="$(grep -o 'CKV2\?_[A-Z0-9]*_[0-9]*' "$WORK/checkov.txt" | sort -u || true)"
  for id in $ids; do
    if [[ -n "${CHECKOV_ACCEPTED[$id]:-}" ]]; then
      echo "   accepted $id: ${CHECKOV_ACCEPTED[$id]}"
    else
      echo "   unexpected finding $id"; cat "$WORK/checkov.txt"; return 1
    fi
  done
  grep -E '^(kubernetes|cloudformation|dockerfile|secrets|kustomize|json|yaml) scan results|Passed checks' "$WORK/checkov.txt" | sed 's/^/   /' || true
}

check_checkov() {
  need checkov
  # Offline: no guideline/mapping downloads from the checkov vendor's API.
  export BC_SKIP_MAPPING=TRUE
  declare -A CHECKOV_ACCEPTED_MAIN=([CKV_DOCKER_2]="${CHECKOV_ACCEPTED[CKV_DOCKER_2]}")
  # The main Dockerfile gets only the HEALTHCHECK exception.
  echo "-- Dockerfile"
  checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile --soft-fail-on CKV_DOCKER_2 > "$WORK/checkov.txt" 2>&1 \
    || { cat "$WORK/checkov.txt"; return 1; }
  if grep -o 'CKV2\?_[A-Z0-9]*_[0-9]*' "$WORK/checkov.txt" | grep -vx CKV_DOCKER_2; then
    cat "$WORK/checkov.txt"; return 1
  fi
  grep -q CKV_DOCKER_2 "$WORK/checkov.txt" && echo "   accepted CKV_DOCKER_2: ${CHECKOV_ACCEPTED_MAIN[CKV_DOCKER_2]}"
  checkov_run "deploy/ (kubernetes, kustomize, cloudformation, dockerfile, secrets)" -d deploy
  # checkov cannot render the chart without a helm binary: scan the SDK's rendering.
  mkdir -p "$WORK/helm-render"
  "$PY" scripts/helm_chart.py render deploy/helm/rootwatch > "$WORK/helm-render/rootwatch.yaml"
  checkov_run "rendered Helm chart" --framework kubernetes -d "$WORK/helm-render"
}

check_dashboard_and_metrics() {
  "$PY" - <<'EOF'
import json, re, sys
errors = []
dash = json.load(open("deploy/grafana/rootwatch.json"))
if not (36 <= dash.get("schemaVersion", 0) <= 41):
    errors.append(f"schemaVersion {dash.get('schemaVersion')}")
tv = {v["name"]: v for v in dash["templating"]["list"]}
if tv.get("datasource", {}).get("type") != "datasource" or tv["datasource"].get("query") != "prometheus":
    errors.append("a 'datasource' variable of type datasource/prometheus is required")
exprs = []
def walk(panels):
    for p in panels:
        if p.get("type") != "row":
            ds = p.get("datasource", {})
            if ds.get("uid") != "${datasource}":
                errors.append(f"panel {p.get('title')!r} does not use ${{datasource}}")
            if not p.get("targets"):
                errors.append(f"panel {p.get('title')!r} has no queries")
            for t in p.get("targets", []):
                exprs.append(t["expr"])
        walk(p.get("panels", []))
walk(dash["panels"])
ids = [p["id"] for p in dash["panels"]]
if len(ids) != len(set(ids)):
    errors.append("duplicate panel ids")

# Every metric the project exports (keep in step with the Rust code).
counters_gauges = {
    "rootwatch_build_info", "rootwatch_messages_received_total", "rootwatch_messages_deleted_total",
    "rootwatch_messages_redrive_total", "rootwatch_source_errors_total", "rootwatch_events_processed_total",
    "rootwatch_decode_errors_total", "rootwatch_findings_total", "rootwatch_alerts_delivered_total",
    "rootwatch_alerts_retried_total", "rootwatch_alerts_failed_total", "rootwatch_dedup_suppressed_total",
    "rootwatch_throttle_suppressed_total", "rootwatch_in_flight_messages",
    "rootwatch_cloudwatch_checkpoint_age_seconds", "rootwatch_source_up",
    "rootwatch_posture_violations", "rootwatch_posture_audits_total",
    "rootwatch_posture_resolved_total",
}
# The process_* series every Prometheus client exports.
process = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
    "process_threads",
}
histograms = {"rootwatch_delivery_duration_seconds", "rootwatch_event_lag_seconds"}
known = counters_gauges | process | {h + s for h in histograms for s in ("_bucket", "_sum", "_count")}
name_re = re.compile(r"\b(?:rootwatch|process)_[a-z0-9_]+")
used = set()
for e in exprs:
    used |= set(name_re.findall(e))
alerts_text = open("deploy/prometheus/alerts.yaml").read()
import yaml
for g in yaml.safe_load(alerts_text)["groups"]:
    for r in g["rules"]:
        used |= set(name_re.findall(r["expr"]))
unknown = sorted(used - known)
if unknown:
    errors.append(f"unknown metric names: {unknown}")
needed_in_dashboard = ["rootwatch_findings_total", "rootwatch_alerts_delivered_total", "rootwatch_alerts_failed_total",
                       "rootwatch_delivery_duration_seconds_bucket", "rootwatch_messages_received_total",
                       "rootwatch_messages_deleted_total", "rootwatch_messages_redrive_total",
                       "rootwatch_decode_errors_total", "rootwatch_event_lag_seconds_bucket",
                       "rootwatch_in_flight_messages", "rootwatch_dedup_suppressed_total",
                       "rootwatch_throttle_suppressed_total", "rootwatch_cloudwatch_checkpoint_age_seconds",
                       "process_cpu_seconds_total", "process_resident_memory_bytes"]
dash_used = set()
for e in exprs:
    dash_used |= set(name_re.findall(e))
for n in needed_in_dashboard:
    if n not in dash_used:
        errors.append(f"dashboard does not chart {n}")
with open("deploy/metric-names.txt", "w") as fh:
    fh.write("".join(n + "\n" for n in sorted(used)))
for e in errors:
    print("error:", e)
print(f"{len(exprs)} dashboard queries; {len(used)} metric names written to deploy/metric-names.txt")
sys.exit(1 if errors else 0)
EOF
}

run_check "hadolint (Dockerfile, deploy/ecs/Dockerfile)" check_hadolint
run_check "Dockerfile contract (stages, non-root USER, EXPOSE, ENTRYPOINT/CMD)" check_dockerfile_contract
run_check "kustomize build + kubernetes-validate --strict" check_kustomize
run_check "helm lint --strict + values.schema.json rejects misspelt keys" check_helm_lint_schema
run_check "helm chart (defaults) render + kubernetes-validate + same objects as kustomize" check_helm_default
run_check "helm chart (ServiceMonitor, PrometheusRule, dashboard, KEDA) render + checks" check_helm_optional
run_check "helm chart: admin port follows [server] listen" check_helm_admin_port
run_check "helm chart (every value set; test hook; refusals) render + kubernetes-validate + checkov" check_helm_values
run_check "rootwatch.toml copies agree" check_configs
run_check "shutdown: grace_secs + hand-back + margin end before SIGKILL" check_shutdown_margins

echo "==> rootwatch check-config (built binary)"
set +e
( set -euo pipefail; check_config_binary ) > "$WORK/out" 2>&1
rc=$?
set -e
sed 's/^/    /' "$WORK/out"
case $rc in
  0) record PASS "rootwatch check-config on the shipped configs" ;;
  3) record SKIP "rootwatch check-config on the shipped configs" "set ROOTWATCH_BIN to a built binary to run it" ;;
  *) record FAIL "rootwatch check-config on the shipped configs" ;;
esac

run_check "cfn-lint deploy/aws/*.yaml" check_cfn
run_check "promtool check rules + test rules" check_promtool
run_check "ECS task definition + IAM policies" check_ecs
run_check "checkov (Dockerfile, deploy/, rendered chart)" check_checkov
run_check "Grafana dashboard + deploy/metric-names.txt" check_dashboard_and_metrics

echo
echo "================ summary ================"
printf '%s\n' "${RESULTS[@]}"
if [[ "$FAILED" != 0 ]]; then
  echo "check-deploy: FAILED"
  exit 1
fi
echo "check-deploy: all checks passed"
