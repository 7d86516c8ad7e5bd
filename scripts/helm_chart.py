#!/usr/bin/env python3
"""Render and lint deploy/helm/rootwatch with the Helm v4 SDK (helm-python-sdk,
no helm binary), and compare the render with the kustomize base.

Subcommands:
  render CHART [--release NAME] [--namespace NS] [-f VALUES] [--set k=v]
      render as `helm template` does (chart defaults coalesced with the
      values files, then --set in Helm's syntax; values.schema.json
      enforced) and print multi-document YAML on stdout; a template's
      `fail` or a schema violation is an error on stderr and exit 1
  lint CHART [-f VALUES] [--set k=v]
      `helm lint --strict`: any warning or error fails
  compare KUSTOMIZE.yaml HELM.yaml
      compare kinds/names, probes, securityContexts, env, volumes, config,
      service ports and service account settings of the two renders
  check-crds HELM.yaml
      structural checks of the custom resources (ServiceMonitor,
      PrometheusRule, ScaledObject, TriggerAuthentication), which have no
      schema in kubernetes-validate; writes PrometheusRule groups to
      --rules-out for promtool
  check-test-hook HELM.yaml [--sink NAME]
      the `helm test` pod runs `rootwatch test-alert` with the Deployment's
      config, environment, volumes and service account
"""

import argparse
import copy
import re
import sys

import yaml
from helm_python import Chart, HelmError, lint, parse_set_string

# helm lint severities: 1 info, 2 warning, 3 error.
LINT_WARNING = 2


def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def user_values(value_files, sets):
    """The values a user passes, in Helm's order: files, then --set."""
    values = {}
    for vf in value_files:
        with open(vf, encoding="utf-8") as fh:
            deep_merge(values, yaml.safe_load(fh) or {})
    for s in sets:
        deep_merge(values, parse_set_string(s))
    return values


def render(chart_dir, release, namespace, values):
    chart = Chart.load(chart_dir)
    try:
        out = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    finally:
        chart.close()
    docs = []
    for name in sorted(out):
        # NOTES.txt is text Helm prints after an install, not a manifest.
        if name.endswith("/NOTES.txt"):
            continue
        for part in re.split(r"(?m)^---\s*$", out[name]):
            obj = yaml.safe_load(part) if part.strip() else None
            if obj is None:
                continue
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                raise HelmError(f"{name}: rendered document is not a Kubernetes object")
            docs.append((name, part.strip("\n")))
    return docs


def lint_chart(chart_dir, values):
    result = lint(chart_dir, values, strict=True)
    bad = [m for m in result["messages"] if m["severity"] >= LINT_WARNING]
    for m in result["messages"]:
        level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m["severity"], str(m["severity"]))
        print(f"  [{level}] {m['path']}: {m['error'].strip()}")
    if bad or result["errors"]:
        return 1
    print(f"  {result['total_charts_linted']} chart(s) linted, no warnings")
    return 0


# --------------------------------------------------------------------------
# Comparison with the kustomize base
# --------------------------------------------------------------------------

HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def load_objects(path):
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def index(objs, strip_hash):
    out = {}
    renames = {}
    for o in objs:
        name = o["metadata"]["name"]
        if strip_hash and o["kind"] == "ConfigMap" and HASH_SUFFIX.search(name):
            base = HASH_SUFFIX.sub("", name)
            renames[name] = base
            name = base
        out[(o["kind"], name)] = o
    return out, renames


def pod_view(dep, renames):
    spec = copy.deepcopy(dep["spec"]["template"]["spec"])
    for vol in spec.get("volumes", []):
        cm = vol.get("configMap")
        if cm and cm.get("name") in renames:
            cm["name"] = renames[cm["name"]]
    view = {
        "pod.securityContext": spec.get("securityContext"),
        "pod.serviceAccountName": spec.get("serviceAccountName"),
        "pod.automountServiceAccountToken": spec.get("automountServiceAccountToken"),
        "pod.terminationGracePeriodSeconds": spec.get("terminationGracePeriodSeconds"),
        "pod.volumes": spec.get("volumes"),
    }
    for c in spec["containers"]:
        for key in ("image", "args", "ports", "env", "livenessProbe", "readinessProbe",
                    "startupProbe", "resources", "securityContext", "volumeMounts"):
            view[f"container[{c['name']}].{key}"] = c.get(key)
    anns = dep["spec"]["template"]["metadata"].get("annotations", {})
    view["pod.prometheus-annotations"] = {k: v for k, v in anns.items() if k.startswith("prometheus.io/")}
    view["spec.replicas"] = dep["spec"].get("replicas")
    view["spec.strategy"] = dep["spec"].get("strategy")
    return view


def is_hook(obj):
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def compare(kust_path, helm_path):
    kobjs, renames = index(load_objects(kust_path), strip_hash=True)
    # Hooks (the `helm test` pod) run on demand; they are not part of the
    # installed release the kustomize base describes.
    hobjs, _ = index([o for o in load_objects(helm_path) if not is_hook(o)], strip_hash=False)
    problems = []
    if set(kobjs) != set(hobjs):
        problems.append(f"objects differ: kustomize {sorted(kobjs)} vs helm {sorted(hobjs)}")
    for key in sorted(set(kobjs) & set(hobjs)):
        k, h = kobjs[key], hobjs[key]
        kind = key[0]
        if kind == "Deployment":
            kv, hv = pod_view(k, renames), pod_view(h, {})
            for field in sorted(set(kv) | set(hv)):
                if kv.get(field) != hv.get(field):
                    problems.append(f"{kind}/{key[1]} {field}: kustomize={kv.get(field)!r} helm={hv.get(field)!r}")
            sel_k = k["spec"]["selector"]["matchLabels"]
            sel_h = h["spec"]["selector"]["matchLabels"]
            if not set(sel_k.items()) <= set(sel_h.items()) and not set(sel_h.items()) <= set(sel_k.items()):
                problems.append(f"{kind}/{key[1]} selectors unrelated: {sel_k} vs {sel_h}")
        elif kind == "ConfigMap":
            if k.get("data") != h.get("data"):
                problems.append(f"{kind}/{key[1]} data differs")
        elif kind == "Service":
            for field in ("type", "ports", "selector"):
                if k["spec"].get(field) != h["spec"].get(field):
                    problems.append(f"{kind}/{key[1]} spec.{field}: {k['spec'].get(field)!r} vs {h['spec'].get(field)!r}")
        elif kind == "ServiceAccount":
            if k["metadata"].get("annotations") != h["metadata"].get("annotations"):
                problems.append(f"{kind}/{key[1]} annotations differ")
            if k.get("automountServiceAccountToken") != h.get("automountServiceAccountToken"):
                problems.append(f"{kind}/{key[1]} automountServiceAccountToken differs")
        elif kind == "NetworkPolicy":
            for field in ("policyTypes", "ingress", "egress"):
                if k["spec"].get(field) != h["spec"].get(field):
                    problems.append(f"{kind}/{key[1]} spec.{field}: {k['spec'].get(field)!r} vs {h['spec'].get(field)!r}")
            if k["spec"]["podSelector"] != h["spec"]["podSelector"]:
                problems.append(f"{kind}/{key[1]} podSelector differs")
        else:
            problems.append(f"{kind}/{key[1]}: no comparison defined for this kind")
    for p in problems:
        print(f"  mismatch: {p}")
    if not problems:
        print(f"  {len(kobjs)} objects match: " + ", ".join(f"{a}/{b}" for a, b in sorted(kobjs)))
    return 0 if not problems else 1


# --------------------------------------------------------------------------
# Custom resources (no schema in kubernetes-validate)
# --------------------------------------------------------------------------

def check_crds(helm_path, rules_out, expect):
    objs = load_objects(helm_path)
    problems = []
    seen = set()
    deployments = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}
    services = [o for o in objs if o["kind"] == "Service"]
    for o in objs:
        kind, name = o["kind"], o["metadata"]["name"]
        spec = o.get("spec") or {}
        if kind == "ServiceMonitor":
            seen.add(kind)
            if o["apiVersion"] != "monitoring.coreos.com/v1":
                problems.append(f"{kind}: apiVersion {o['apiVersion']}")
            eps = spec.get("endpoints") or []
            if not eps or eps[0].get("port") != "admin" or eps[0].get("path") != "/metrics":
                problems.append(f"{kind}/{name}: endpoint must scrape port admin at /metrics")
            sel = spec.get("selector", {}).get("matchLabels", {})
            if not any(set(sel.items()) <= set(s["metadata"].get("labels", {}).items()) for s in services):
                problems.append(f"{kind}/{name}: selector {sel} matches no Service's labels")
        elif kind == "PrometheusRule":
            seen.add(kind)
            if o["apiVersion"] != "monitoring.coreos.com/v1":
                problems.append(f"{kind}: apiVersion {o['apiVersion']}")
            groups = spec.get("groups")
            if not groups or set(spec) != {"groups"}:
                problems.append(f"{kind}/{name}: spec must hold only non-empty groups")
            elif rules_out:
                with open(rules_out, "w", encoding="utf-8") as fh:
                    yaml.safe_dump({"groups": groups}, fh, sort_keys=False)
        elif kind == "ScaledObject":
            seen.add(kind)
            if o["apiVersion"] != "keda.sh/v1alpha1":
                problems.append(f"{kind}: apiVersion {o['apiVersion']}")
            if spec.get("scaleTargetRef", {}).get("name") not in deployments:
                problems.append(f"{kind}/{name}: scaleTargetRef does not name a rendered Deployment")
            trig = (spec.get("triggers") or [{}])[0]
            md = trig.get("metadata", {})
            if trig.get("type") != "aws-sqs-queue":
                problems.append(f"{kind}/{name}: trigger type {trig.get('type')}")
            for field in ("queueURL", "queueLength", "awsRegion", "scaleOnInFlight"):
                if not isinstance(md.get(field), str) or not md.get(field):
                    problems.append(f"{kind}/{name}: trigger metadata.{field} must be a non-empty string")
            if md.get("scaleOnInFlight") not in ("true", "false"):
                problems.append(f"{kind}/{name}: scaleOnInFlight must be \"true\" or \"false\"")
            if "identityOwner" in md:
                problems.append(f"{kind}/{name}: identityOwner belongs in the TriggerAuthentication's podIdentity")
            ref = (trig.get("authenticationRef") or {}).get("name")
            if not any(x["kind"] == "TriggerAuthentication" and x["metadata"]["name"] == ref for x in objs):
                problems.append(f"{kind}/{name}: authenticationRef {ref!r} names no rendered TriggerAuthentication")
            mn, mx = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
            if not (isinstance(mn, int) and isinstance(mx, int) and 0 <= mn <= mx):
                problems.append(f"{kind}/{name}: bad min/max replica counts")
            for d in objs:
                if d["kind"] == "Deployment" and "replicas" in d["spec"]:
                    problems.append(f"Deployment/{d['metadata']['name']}: sets replicas while KEDA scales it")
        elif kind == "TriggerAuthentication":
            seen.add(kind)
            pid = spec.get("podIdentity", {})
            if pid.get("provider") != "aws":
                problems.append(f"{kind}/{name}: podIdentity.provider must be aws")
            if pid.get("identityOwner") not in ("keda", "workload"):
                problems.append(f"{kind}/{name}: podIdentity.identityOwner must be keda or workload")
            if "roleArn" in pid and pid.get("identityOwner") != "keda":
                problems.append(f"{kind}/{name}: podIdentity.roleArn only goes with identityOwner keda")
    for kind in expect:
        if kind not in seen:
            problems.append(f"expected a {kind} in the render")
    for p in problems:
        print(f"  problem: {p}")
    if not problems:
        print(f"  custom resources OK: {', '.join(sorted(seen)) or 'none'}")
    return 0 if not problems else 1


# --------------------------------------------------------------------------
# The `helm test` hook
# --------------------------------------------------------------------------

def check_test_hook(helm_path, sink):
    """The test pod runs `rootwatch test-alert` with what the Deployment
    runs with: config volume, environment, envFrom, service account,
    security contexts and extra volumes."""
    objs = load_objects(helm_path)
    problems = []
    deps = [o for o in objs if o["kind"] == "Deployment"]
    pods = [o for o in objs if o["kind"] == "Pod"]
    if len(deps) != 1 or len(pods) != 1:
        print(f"  problem: expected one Deployment and one test Pod, got {len(deps)} and {len(pods)}")
        return 1
    dep, pod = deps[0]["spec"]["template"]["spec"], pods[0]
    anns = pod["metadata"].get("annotations") or {}
    if anns.get("helm.sh/hook") != "test":
        problems.append("test Pod lacks the helm.sh/hook: test annotation")
    spec = pod["spec"]
    if spec.get("restartPolicy") != "Never":
        problems.append("test Pod must not restart (restartPolicy Never)")
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                "priorityClassName", "nodeSelector", "tolerations", "affinity"):
        if spec.get(key) != dep.get(key):
            problems.append(f"test Pod {key} {spec.get(key)!r} != Deployment's {dep.get(key)!r}")
    if spec.get("volumes") != dep.get("volumes"):
        problems.append("test Pod volumes differ from the Deployment's")
    c, d = spec["containers"][0], dep["containers"][0]
    want_args = ["test-alert", "--config", "/etc/rootwatch/rootwatch.toml"] + (["--sink", sink] if sink else [])
    if c.get("args") != want_args:
        problems.append(f"test container args {c.get('args')} != {want_args}")
    for key in ("image", "env", "envFrom", "volumeMounts", "securityContext"):
        if c.get(key) != d.get(key):
            problems.append(f"test container {key} differs from the Deployment's")
    sel = (deps[0]["spec"]["selector"] or {}).get("matchLabels", {})
    if set(sel.items()) <= set((pod["metadata"].get("labels") or {}).items()):
        problems.append("test Pod matches the Deployment's selector (the Service would route to it)")
    for p in problems:
        print(f"  problem: {p}")
    if not problems:
        print(f"  test hook runs {' '.join(want_args)} with the Deployment's config, env, volumes and service account")
    return 0 if not problems else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("render", "lint"):
        r = sub.add_parser(cmd)
        r.add_argument("chart")
        r.add_argument("-f", "--values", action="append", default=[])
        r.add_argument("--set", action="append", default=[])
        if cmd == "render":
            r.add_argument("--release", default="rootwatch")
            r.add_argument("--namespace", default="default")
    c = sub.add_parser("compare")
    c.add_argument("kustomize")
    c.add_argument("helm")
    k = sub.add_parser("check-crds")
    k.add_argument("helm")
    k.add_argument("--rules-out")
    k.add_argument("--expect", action="append", default=[])
    t = sub.add_parser("check-test-hook")
    t.add_argument("helm")
    t.add_argument("--sink", default="")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "render":
            docs = render(args.chart, args.release, args.namespace, user_values(args.values, args.set))
            for name, text in docs:
                sys.stdout.write(f"---\n# Source: {name}\n{text}\n")
            return 0
        if args.cmd == "lint":
            return lint_chart(args.chart, user_values(args.values, args.set))
        if args.cmd == "compare":
            return compare(args.kustomize, args.helm)
        if args.cmd == "check-test-hook":
            return check_test_hook(args.helm, args.sink)
        return check_crds(args.helm, args.rules_out, args.expect)
    except HelmError as exc:
        print(f"helm: error: {str(exc).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
