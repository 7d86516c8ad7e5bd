#!/usr/bin/env python3
"""Render deploy/helm/rootwatch without helm, and compare it with kustomize.

No helm binary can be installed where the deploy checks run, so this file
implements the small subset of Go templates (plus Helm functions) that the
chart uses, and nothing more:

  text, {{ pipeline }}, {{/* comments */}}, {{- / -}} whitespace trimming,
  {{ if }} / {{ else }} / {{ end }}, {{ define "name" }} ... {{ end }},
  fields (.Values.a.b, .Release.*, .Chart.*, .Files.Get, "."),
  string and integer literals, parenthesised pipelines, "|" pipes, and the
  functions include, default, quote, toYaml, indent, nindent, trunc,
  trimSuffix, sha256sum, not, eq, lt, int, atoi, add, regexFind, fail.

Anything else (range, with, variables, else if, other functions, printing a
missing value, a map or a float) is an error, so a chart change that this
renderer would misrender fails the check instead of passing silently.

Subcommands:
  render CHART [--release NAME] [--namespace NS] [-f VALUES] [--set k=v]
      print the rendered manifests (multi-document YAML) on stdout
  compare KUSTOMIZE.yaml HELM.yaml
      compare kinds/names, probes, securityContexts, env, volumes, config,
      service ports and service account settings of the two renders
  check-crds HELM.yaml
      structural checks of the custom resources (ServiceMonitor,
      PrometheusRule, ScaledObject, TriggerAuthentication), which have no
      schema in kubernetes-validate; writes PrometheusRule groups to
      --rules-out for promtool
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import re
import sys

import yaml


class TemplateError(Exception):
    pass


# --------------------------------------------------------------------------
# Lexing
# --------------------------------------------------------------------------

def lex(src: str, fname: str):
    """Split a template into ('text', str) and ('action', str, lineno) items,
    applying {{- and -}} whitespace trimming."""
    items = []
    pos = 0
    trim_next = False
    while True:
        start = src.find("{{", pos)
        if start < 0:
            text = src[pos:]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            items.append(("text", text))
            break
        text = src[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
            trim_next = False
        inner_start = start + 2
        if src.startswith("- ", inner_start) or src.startswith("-\n", inner_start):
            text = text.rstrip(" \t\r\n")
            inner_start += 2
        elif src.startswith("-", inner_start) and not src.startswith("-}}", inner_start):
            raise TemplateError(f"{fname}:{lineno(src, start)}: '{{{{-' must be followed by a space")
        items.append(("text", text))
        lno = lineno(src, start)
        rest = src[inner_start:].lstrip(" \t\r\n")
        if rest.startswith("/*"):
            cstart = src.index("/*", inner_start)
            cend = src.find("*/", cstart + 2)
            if cend < 0:
                raise TemplateError(f"{fname}:{lno}: unclosed comment")
            after = cend + 2
            if src.startswith(" -}}", after):
                trim_next = True
                pos = after + 4
            elif src.startswith("}}", after):
                pos = after + 2
            else:
                raise TemplateError(f"{fname}:{lno}: comment must end with '*/}}}}'")
            continue
        # scan to the closing braces, skipping string literals
        i = inner_start
        while True:
            if i >= len(src):
                raise TemplateError(f"{fname}:{lno}: unclosed action")
            ch = src[i]
            if ch == '"':
                i += 1
                while i < len(src) and src[i] != '"':
                    if src[i] == "\\":
                        i += 1
                    if src[i] == "\n":
                        raise TemplateError(f"{fname}:{lno}: newline in string")
                    i += 1
                i += 1
                continue
            if ch == "`":
                raise TemplateError(f"{fname}:{lno}: raw strings are not supported")
            if src.startswith(" -}}", i) or src.startswith("\n-}}", i):
                body = src[inner_start:i]
                trim_next = True
                pos = i + 4
                break
            if src.startswith("}}", i):
                body = src[inner_start:i]
                pos = i + 2
                break
            i += 1
        items.append(("action", body.strip(), lno))
    return [it for it in items if not (it[0] == "text" and it[1] == "")]


def lineno(src: str, offset: int) -> int:
    return src.count("\n", 0, offset) + 1


TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?![\w.]))
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<pipe>\|)
      | (?P<lparen>\()
      | (?P<rparen>\))
    )""",
    re.VERBOSE,
)


def tokenize(expr: str, where: str):
    tokens = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"{where}: cannot parse {expr[pos:]!r} in {{{{ {expr} }}}}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "string":
            val = decode_string(val, where)
        elif kind == "number":
            val = int(val)
        tokens.append((kind, val))
        pos = m.end()
    return tokens


def decode_string(lit: str, where: str) -> str:
    body = lit[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            mapping = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
            if nxt not in mapping:
                raise TemplateError(f"{where}: unsupported escape \\{nxt}")
            out.append(mapping[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

UNSUPPORTED_KEYWORDS = {"range", "with", "template", "block", "break", "continue", "tpl"}


def parse_pipeline(tokens, where):
    """pipeline := command ('|' command)* ; command := operand+"""
    pos = 0

    def parse_operand():
        nonlocal pos
        kind, val = tokens[pos]
        if kind == "lparen":
            depth = 1
            j = pos + 1
            while j < len(tokens) and depth:
                if tokens[j][0] == "lparen":
                    depth += 1
                elif tokens[j][0] == "rparen":
                    depth -= 1
                j += 1
            if depth:
                raise TemplateError(f"{where}: unbalanced parentheses")
            inner = parse_pipeline(tokens[pos + 1:j - 1], where)
            pos = j
            return ("pipeline", inner)
        if kind in ("string", "number"):
            pos += 1
            return ("literal", val)
        if kind == "field":
            pos += 1
            return ("field", val)
        if kind == "ident":
            if val in UNSUPPORTED_KEYWORDS:
                raise TemplateError(f"{where}: '{val}' is not supported by this renderer")
            if val in ("true", "false"):
                pos += 1
                return ("literal", val == "true")
            pos += 1
            return ("ident", val)
        raise TemplateError(f"{where}: unexpected token {val!r}")

    commands = []
    current = []
    while pos < len(tokens):
        if tokens[pos][0] == "pipe":
            if not current:
                raise TemplateError(f"{where}: empty command in pipeline")
            commands.append(current)
            current = []
            pos += 1
            continue
        if tokens[pos][0] == "rparen":
            raise TemplateError(f"{where}: unbalanced parentheses")
        current.append(parse_operand())
    if not current:
        raise TemplateError(f"{where}: empty pipeline")
    commands.append(current)
    return commands


def parse(items, fname, defines):
    """Build a node list; 'define' blocks go into `defines`."""
    root = []
    stack = [("root", root, None)]

    for it in items:
        if it[0] == "text":
            stack[-1][1].append(("text", it[1]))
            continue
        body, lno = it[1], it[2]
        where = f"{fname}:{lno}"
        if body.startswith("$") or re.search(r"\$[A-Za-z_]*\s*:?=", body):
            raise TemplateError(f"{where}: variables are not supported: {{{{ {body} }}}}")
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word in UNSUPPORTED_KEYWORDS:
            raise TemplateError(f"{where}: '{word}' is not supported by this renderer")
        if word == "if":
            node = ("if", parse_pipeline(tokenize(rest, where), where), [], [], where)
            stack[-1][1].append(node)
            stack.append(("if", node[2], node))
        elif word == "else":
            if rest:
                raise TemplateError(f"{where}: 'else {rest}' is not supported")
            if stack[-1][0] != "if":
                raise TemplateError(f"{where}: else outside if")
            node = stack.pop()[2]
            stack.append(("else", node[3], node))
        elif word == "end":
            if rest:
                raise TemplateError(f"{where}: unexpected text after end")
            if len(stack) == 1:
                raise TemplateError(f"{where}: end without block")
            frame = stack.pop()
            if frame[0] == "define":
                defines[frame[2]] = frame[1]
        elif word == "define":
            toks = tokenize(rest, where)
            if len(toks) != 1 or toks[0][0] != "string":
                raise TemplateError(f"{where}: define needs one string name")
            if len(stack) != 1:
                raise TemplateError(f"{where}: define must be at top level")
            stack.append(("define", [], toks[0][1]))
        else:
            stack[-1][1].append(("action", parse_pipeline(tokenize(body, where), where), where))
    if len(stack) != 1:
        raise TemplateError(f"{fname}: unclosed {stack[-1][0]} block")
    return root


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------

class Files:
    def __init__(self, chart_dir):
        self.chart_dir = os.path.realpath(chart_dir)

    def get(self, path):
        full = os.path.realpath(os.path.join(self.chart_dir, path))
        if not full.startswith(self.chart_dir + os.sep):
            raise TemplateError(f".Files.Get {path!r} is outside the chart")
        if not os.path.isfile(full):
            # helm returns "" for a missing file; an empty rule set would
            # pass silently, so refuse instead
            raise TemplateError(f".Files.Get {path!r}: no such file in the chart")
        with open(full, encoding="utf-8") as fh:
            return fh.read()


def truthy(v):
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def to_text(v, where):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v
    if v is None:
        raise TemplateError(f"{where}: value is missing (helm would print an empty string)")
    raise TemplateError(f"{where}: cannot print a {type(v).__name__} directly (use toYaml)")


def go_quote(v, where):
    s = to_text(v, where)
    for ch in s:
        if not (0x20 <= ord(ch) < 0x7F):
            raise TemplateError(f"{where}: quote of non-printable/non-ASCII text is not supported")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_yaml(v):
    if v is None:
        return "null"
    out = yaml.safe_dump(v, default_flow_style=False, sort_keys=True, width=10**6)
    if out.endswith("\n...\n"):
        out = out[: -len("...\n")]
    return out.rstrip("\n") if out.endswith("\n") else out


def int_arg(v, where):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TemplateError(f"{where}: expected an integer, got {v!r}")
    return v


def indent(n, s):
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


class Renderer:
    def __init__(self, defines):
        self.defines = defines
        self.depth = 0

    def functions(self):
        def need(args, n, name, where):
            if len(args) != n:
                raise TemplateError(f"{where}: {name} takes {n} argument(s), got {len(args)}")

        def f_include(args, where):
            need(args, 2, "include", where)
            name, ctx = args
            if name not in self.defines:
                raise TemplateError(f"{where}: no template named {name!r}")
            self.depth += 1
            if self.depth > 50:
                raise TemplateError(f"{where}: include recursion too deep")
            try:
                return self.render_nodes(self.defines[name], ctx)
            finally:
                self.depth -= 1

        def f_default(args, where):
            need(args, 2, "default", where)
            return args[1] if truthy(args[1]) else args[0]

        def f_quote(args, where):
            need(args, 1, "quote", where)
            return go_quote(args[0], where)

        def f_toyaml(args, where):
            need(args, 1, "toYaml", where)
            return to_yaml(args[0])

        def f_indent(args, where):
            need(args, 2, "indent", where)
            return indent(int_arg(args[0], where), to_text(args[1], where))

        def f_nindent(args, where):
            need(args, 2, "nindent", where)
            return "\n" + indent(int_arg(args[0], where), to_text(args[1], where))

        def f_trunc(args, where):
            need(args, 2, "trunc", where)
            n = int_arg(args[0], where)
            if n < 0:
                raise TemplateError(f"{where}: negative trunc is not supported")
            return to_text(args[1], where)[:n]

        def f_trimsuffix(args, where):
            need(args, 2, "trimSuffix", where)
            suffix, s = to_text(args[0], where), to_text(args[1], where)
            return s[: -len(suffix)] if suffix and s.endswith(suffix) else s

        def f_sha256sum(args, where):
            need(args, 1, "sha256sum", where)
            return hashlib.sha256(to_text(args[0], where).encode()).hexdigest()

        def f_not(args, where):
            need(args, 1, "not", where)
            return not truthy(args[0])

        def f_eq(args, where):
            need(args, 2, "eq", where)
            a, b = args
            if type(a) is not type(b):
                raise TemplateError(f"{where}: eq of {type(a).__name__} and {type(b).__name__}")
            return a == b

        def f_lt(args, where):
            need(args, 2, "lt", where)
            return int_arg(args[0], where) < int_arg(args[1], where)

        def f_int(args, where):
            # Sprig's int: helm reads numbers in values as floats.
            need(args, 1, "int", where)
            v = args[0]
            if isinstance(v, float) and v.is_integer():
                return int(v)
            return int_arg(v, where)

        def f_atoi(args, where):
            # Sprig's atoi: 0 for text that is not a number.
            need(args, 1, "atoi", where)
            text = to_text(args[0], where).strip()
            return int(text) if re.fullmatch(r"-?[0-9]+", text) else 0

        def f_add(args, where):
            if not args:
                raise TemplateError(f"{where}: add takes at least one argument")
            return sum(int_arg(a, where) for a in args)

        def f_regexfind(args, where):
            # Go's RE2 and Python's re agree on the plain patterns this
            # chart uses (classes, anchors, (?m)); anything fancier is refused.
            need(args, 2, "regexFind", where)
            pattern, text = to_text(args[0], where), to_text(args[1], where)
            if re.search(r"\(\?[^m]|\\[0-9]|\(\?<", pattern):
                raise TemplateError(f"{where}: regexFind pattern {pattern!r} is beyond what is supported")
            m = re.search(pattern, text)
            return m.group(0) if m else ""

        def f_fail(args, where):
            need(args, 1, "fail", where)
            raise TemplateError(f"{where}: fail: {to_text(args[0], where)}")

        return {
            "include": f_include, "default": f_default, "quote": f_quote,
            "toYaml": f_toyaml, "indent": f_indent, "nindent": f_nindent,
            "trunc": f_trunc, "trimSuffix": f_trimsuffix,
            "sha256sum": f_sha256sum, "not": f_not, "eq": f_eq,
            "lt": f_lt, "int": f_int, "atoi": f_atoi, "add": f_add,
            "regexFind": f_regexfind, "fail": f_fail,
        }

    def resolve_field(self, path, dot, where):
        if path == ".":
            return dot
        cur = dot
        walked = ""
        for part in path.split(".")[1:]:
            walked += "." + part
            if isinstance(cur, Files):
                if part != "Get":
                    raise TemplateError(f"{where}: .Files.{part} is not supported")
                cur = cur.get
                continue
            if not isinstance(cur, dict):
                raise TemplateError(f"{where}: cannot evaluate {walked}: parent is {type(cur).__name__}")
            cur = cur.get(part)
        return cur

    def eval_operand(self, op, dot, where):
        kind, val = op
        if kind == "literal":
            return val
        if kind == "field":
            return self.resolve_field(val, dot, where)
        if kind == "pipeline":
            return self.eval_pipeline(val, dot, where)
        raise TemplateError(f"{where}: function {val!r} used as a value")

    def eval_command(self, cmd, dot, where, piped, has_piped):
        head = cmd[0]
        funcs = self.functions()
        if head[0] == "ident":
            if head[1] not in funcs:
                raise TemplateError(f"{where}: unknown function {head[1]!r}")
            args = [self.eval_operand(op, dot, where) for op in cmd[1:]]
            if has_piped:
                args.append(piped)
            return funcs[head[1]](args, where)
        value = self.eval_operand(head, dot, where)
        if callable(value):
            args = [self.eval_operand(op, dot, where) for op in cmd[1:]]
            if has_piped:
                args.append(piped)
            if len(args) != 1:
                raise TemplateError(f"{where}: .Files.Get takes one argument")
            return value(to_text(args[0], where))
        if len(cmd) > 1 or has_piped:
            raise TemplateError(f"{where}: {head[1]} is not a function")
        return value

    def eval_pipeline(self, commands, dot, where):
        value, has = None, False
        for cmd in commands:
            value = self.eval_command(cmd, dot, where, value, has)
            has = True
        return value

    def render_nodes(self, nodes, dot):
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "action":
                out.append(to_text(self.eval_pipeline(node[1], dot, node[2]), node[2]))
            elif node[0] == "if":
                cond = self.eval_pipeline(node[1], dot, node[4])
                out.append(self.render_nodes(node[2] if truthy(cond) else node[3], dot))
        return "".join(out)


# --------------------------------------------------------------------------
# Chart loading
# --------------------------------------------------------------------------

def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def set_path(values, assignment):
    if "=" not in assignment:
        raise TemplateError(f"--set {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    cur = values
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def render_chart(chart_dir, release, namespace, value_files, sets):
    with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as fh:
        chart = yaml.safe_load(fh)
    if chart.get("apiVersion") != "v2":
        raise TemplateError("Chart.yaml: apiVersion must be v2")
    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as fh:
        values = yaml.safe_load(fh) or {}
    for vf in value_files:
        with open(vf, encoding="utf-8") as fh:
            deep_merge(values, yaml.safe_load(fh) or {})
    for s in sets:
        set_path(values, s)

    tdir = os.path.join(chart_dir, "templates")
    names = sorted(os.listdir(tdir))
    defines = {}
    parsed = {}
    for name in names:
        path = os.path.join(tdir, name)
        if not os.path.isfile(path):
            raise TemplateError(f"templates/{name}: subdirectories are not supported")
        if not (name.endswith(".yaml") or name.endswith(".tpl")):
            raise TemplateError(f"templates/{name}: unexpected file type")
        with open(path, encoding="utf-8") as fh:
            src = fh.read()
        parsed[name] = parse(lex(src, f"templates/{name}"), f"templates/{name}", defines)

    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                    "IsInstall": True, "IsUpgrade": False, "Revision": 1},
        "Chart": {"Name": chart["name"], "Version": chart["version"],
                  "AppVersion": chart.get("appVersion", ""),
                  "Description": chart.get("description", ""),
                  "Type": chart.get("type", "application")},
        "Files": Files(chart_dir),
    }
    renderer = Renderer(defines)
    docs = []
    for name in names:
        if name.startswith("_"):
            text = renderer.render_nodes(parsed[name], root)
            if text.strip():
                raise TemplateError(f"templates/{name}: helpers must render no output")
            continue
        text = renderer.render_nodes(parsed[name], root)
        for part in re.split(r"(?m)^---\s*$", text):
            if not part.strip():
                continue
            try:
                obj = yaml.safe_load(part)
            except yaml.YAMLError as exc:
                raise TemplateError(f"templates/{name}: rendered YAML does not parse: {exc}\n{part}")
            if obj is None:
                continue
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                raise TemplateError(f"templates/{name}: rendered document is not a Kubernetes object")
            docs.append((name, part.strip("\n")))
    return docs


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


def compare(kust_path, helm_path):
    kobjs, renames = index(load_objects(kust_path), strip_hash=True)
    hobjs, _ = index(load_objects(helm_path), strip_hash=False)
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
            for field in ("queueURL", "queueLength", "awsRegion", "identityOwner"):
                if not isinstance(md.get(field), str) or not md.get(field):
                    problems.append(f"{kind}/{name}: trigger metadata.{field} must be a non-empty string")
            if md.get("identityOwner") not in ("pod", "operator"):
                problems.append(f"{kind}/{name}: identityOwner must be pod or operator")
            if md.get("identityOwner") == "pod":
                ref = (trig.get("authenticationRef") or {}).get("name")
                if not any(x["kind"] == "TriggerAuthentication" and x["metadata"]["name"] == ref for x in objs):
                    problems.append(f"{kind}/{name}: identityOwner pod needs a TriggerAuthentication")
            mn, mx = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
            if not (isinstance(mn, int) and isinstance(mx, int) and 0 <= mn <= mx):
                problems.append(f"{kind}/{name}: bad min/max replica counts")
            for d in objs:
                if d["kind"] == "Deployment" and "replicas" in d["spec"]:
                    problems.append(f"Deployment/{d['metadata']['name']}: sets replicas while KEDA scales it")
        elif kind == "TriggerAuthentication":
            seen.add(kind)
            if spec.get("podIdentity", {}).get("provider") != "aws":
                problems.append(f"{kind}/{name}: podIdentity.provider must be aws")
    for kind in expect:
        if kind not in seen:
            problems.append(f"expected a {kind} in the render")
    for p in problems:
        print(f"  problem: {p}")
    if not problems:
        print(f"  custom resources OK: {', '.join(sorted(seen)) or 'none'}")
    return 0 if not problems else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("chart")
    r.add_argument("--release", default="rootwatch")
    r.add_argument("--namespace", default="default")
    r.add_argument("-f", "--values", action="append", default=[])
    r.add_argument("--set", action="append", default=[])
    c = sub.add_parser("compare")
    c.add_argument("kustomize")
    c.add_argument("helm")
    k = sub.add_parser("check-crds")
    k.add_argument("helm")
    k.add_argument("--rules-out")
    k.add_argument("--expect", action="append", default=[])
    args = ap.parse_args(argv)
    try:
        if args.cmd == "render":
            docs = render_chart(args.chart, args.release, args.namespace, args.values, args.set)
            chart_name = os.path.basename(os.path.normpath(args.chart))
            for name, text in docs:
                sys.stdout.write(f"---\n# Source: {chart_name}/templates/{name}\n{text}\n")
            return 0
        if args.cmd == "compare":
            return compare(args.kustomize, args.helm)
        return check_crds(args.helm, args.rules_out, args.expect)
    except TemplateError as exc:
        print(f"render_helm: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
