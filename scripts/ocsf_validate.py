"""Validates OCSF Detection Finding (class 2004, the stream's findings) and
Compliance Finding (class 2003, `rootwatch audit --format ocsf`) payloads
against the published OCSF schema, as bundled (one JSON export per schema
version) by the pinned pydantic-ocsf package (scripts/test-requirements.txt).

Usage: python scripts/ocsf_validate.py FILE.json...

Each file holds one event. It must validate as the class its class_uid
names, of the schema version its metadata.version names, and hold no attribute that
version does not define: pydantic-ocsf keeps unknown keys, so every model
in the validated tree is walked for them. The attributes of the profiles
the event declares (metadata.profiles) are allowed at the top and validated
as the objects the profile defines. `unmapped` is free-form by definition.
Exit 0 when every file is valid, 1 otherwise, one line per problem.
"""

import importlib
import ipaddress
import json
import sys

from pydantic import BaseModel, ValidationError

# The attributes each profile adds to an event, with the object type of
# each (OCSF profiles/cloud.json): they are not part of the class models.
PROFILE_ATTRIBUTES = {
    "cloud": {"cloud": "Cloud", "api": "Api"},
}


# The classes rootwatch writes, by class_uid, as pydantic-ocsf names them.
CLASSES = {2004: "DetectionFinding", 2003: "ComplianceFinding"}


def extras(model, path):
    """Every key of `model`'s tree that its schema does not define."""
    found = []
    for key in (model.model_extra or {}):
        found.append(f"{path}.{key}")
    for name, value in model:
        if name == "unmapped":
            continue
        found.extend(walk(value, f"{path}.{name}"))
    return found


def walk(value, path):
    if isinstance(value, BaseModel):
        return extras(value, path)
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            out.extend(walk(v, f"{path}[{i}]"))
        return out
    return []


def bad_ips(value, path):
    """Every `ip` attribute that is not an IP address (the models take any
    string)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "unmapped":
                continue
            if k == "ip":
                try:
                    ipaddress.ip_address(v)
                except ValueError:
                    out.append(f"{path}.{k}: {v!r} is not an IP address")
            else:
                out.extend(bad_ips(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(bad_ips(v, f"{path}[{i}]"))
    return out


def validate(event):
    version = event.get("metadata", {}).get("version", "")
    module = "v" + version.replace(".", "_")
    try:
        events = importlib.import_module(f"ocsf.{module}.events")
        objects = importlib.import_module(f"ocsf.{module}.objects")
    except ImportError:
        return [f"metadata.version {version!r} is not a bundled OCSF schema version"]
    problems = []
    if event.get("class_uid") not in CLASSES:
        return [f"class_uid: {event.get('class_uid')!r} is not one of {sorted(CLASSES)}"]
    class_name = CLASSES[event["class_uid"]]
    try:
        finding = getattr(events, class_name).model_validate(event)
    except ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    allowed = {}
    for profile in event["metadata"].get("profiles") or []:
        if profile not in PROFILE_ATTRIBUTES:
            problems.append(f"metadata.profiles: {profile!r} is not a profile this check knows")
        allowed.update(PROFILE_ATTRIBUTES.get(profile, {}))
    for key in list(finding.model_extra or {}):
        if key not in allowed:
            problems.append(f"{key}: not an attribute of {class_name} {version}")
            continue
        try:
            obj = getattr(objects, allowed[key]).model_validate(event[key])
        except ValidationError as e:
            problems.extend(
                f"{key}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            continue
        problems.extend(f"{p}: not defined by the schema" for p in extras(obj, key))
    finding.__pydantic_extra__ = {}
    problems.extend(f"{p}: not defined by the schema" for p in extras(finding, "$"))
    problems.extend(bad_ips(event, "$"))
    for key, want in [("category_uid", 2)]:
        if event.get(key) != want:
            problems.append(f"{key}: {event.get(key)!r}, not {want}")
    if event.get("type_uid") != event.get("class_uid", 0) * 100 + event.get("activity_id", 0):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    return problems


def main(paths):
    if not paths:
        print("usage: ocsf_validate.py FILE.json...", file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            event = json.load(f)
        problems = validate(event)
        for p in problems:
            print(f"{path}: {p}")
        bad += bool(problems)
    print(f"{len(paths) - bad} valid, {bad} invalid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
