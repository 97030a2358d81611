"""Kind-specific validation of built-in kinds: the rules users meet most often
(containers need a name and an image, a workload's selector must match its
template, ports in range, restart policies a Job accepts), as field causes of
a 422 Invalid. Custom resources are validated by their openAPIV3Schema."""
from __future__ import annotations

import re
from typing import Any

from eventplane.objects.errors import Cause
from eventplane.objects.names import dns1123_label
from eventplane.objects.schema import ResourceInfo
from eventplane.objects.schema.values import validate_values

from .strategy import schema_node

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_MAX_BYTES = 1024 * 1024


def validate(info: ResourceInfo, obj: dict[str, Any]) -> list[Cause]:
    if info.custom:
        return validate_values(obj, schema_node(info))
    key = (info.group, info.resource)
    spec = obj.get("spec") or {}
    if key == ("", "pods"):
        return _pod_spec(spec, "spec")
    if key in (("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets")):
        return _workload(spec, replicas=key != ("apps", "daemonsets"))
    if key == ("", "replicationcontrollers"):
        return _replicas(spec) + _pod_spec(((spec.get("template") or {}).get("spec") or {}), "spec.template.spec")
    if key == ("batch", "jobs"):
        return _job(spec, "spec")
    if key == ("batch", "cronjobs"):
        causes = [] if spec.get("schedule") else [Cause("FieldValueRequired", "Required value", "spec.schedule")]
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        return causes + _job(job, "spec.jobTemplate.spec")
    if key == ("", "services"):
        return _service(spec)
    if key in (("", "configmaps"), ("", "secrets")):
        return _config_data(obj)
    return []


def _replicas(spec: dict[str, Any]) -> list[Cause]:
    r = spec.get("replicas")
    if isinstance(r, int) and r < 0:
        return [Cause("FieldValueInvalid", f"Invalid value: {r}: must be greater than or equal to 0", "spec.replicas")]
    return []


def _labels_repr(labels: dict[str, str]) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def _workload(spec: dict[str, Any], *, replicas: bool) -> list[Cause]:
    causes = _replicas(spec) if replicas else []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.selector"))
    else:
        match = selector.get("matchLabels") or {}
        if not match and not selector.get("matchExpressions"):
            causes.append(Cause("FieldValueInvalid", "Invalid value: \"null\": empty selector is invalid for "
                                                     "deployment", "spec.selector"))
        elif any(labels.get(k) != v for k, v in match.items()) or not _expressions_match(
                selector.get("matchExpressions") or [], labels):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {_labels_repr(labels)}: `selector` does not "
                                                     "match template `labels`", "spec.template.metadata.labels"))
    causes += _pod_spec(template.get("spec") or {}, "spec.template.spec")
    return causes


def _expressions_match(expressions: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    for e in expressions:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _job(spec: dict[str, Any], at: str) -> list[Cause]:
    pod = (spec.get("template") or {}).get("spec") or {}
    causes = _pod_spec(pod, f"{at}.template.spec")
    policy = pod.get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{policy or "Always"}": supported '
                                                      'values: "OnFailure", "Never"',
                            f"{at}.template.spec.restartPolicy"))
    for f in ("parallelism", "completions", "backoffLimit"):
        v = spec.get(f)
        if isinstance(v, int) and v < 0:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {v}: must be greater than or equal to 0",
                                f"{at}.{f}"))
    return causes


def _pod_spec(spec: dict[str, Any], at: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(Cause("FieldValueRequired", "Required value", f"{at}.containers"))
    names: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            where = f"{at}.{kind}[{i}]"
            name = c.get("name") or ""
            if not name:
                causes.append(Cause("FieldValueRequired", "Required value", f"{where}.name"))
            else:
                for msg in dns1123_label(name):
                    causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": {msg}', f"{where}.name"))
                if name in names:
                    causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"{where}.name"))
                names.add(name)
            if not c.get("image"):
                causes.append(Cause("FieldValueRequired", "Required value", f"{where}.image"))
            for j, p in enumerate(c.get("ports") or []):
                port = p.get("containerPort")
                if not isinstance(port, int) or not 0 < port < 65536:
                    causes.append(Cause("FieldValueInvalid", f"Invalid value: {port}: must be between 1 and 65535, "
                                                             "inclusive", f"{where}.ports[{j}].containerPort"))
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{policy}": supported values: '
                                                      '"Always", "OnFailure", "Never"', f"{at}.restartPolicy"))
    return causes


def _service(spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{stype}": supported values: '
                                                      '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                            "spec.type"))
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(Cause("FieldValueRequired", "Required value", "spec.ports"))
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {port}: must be between 1 and 65535, "
                                                     "inclusive", f"spec.ports[{i}].port"))
        if len(ports) > 1 and not p.get("name"):
            causes.append(Cause("FieldValueRequired", "Required value", f"spec.ports[{i}].name"))
    return causes


def _config_data(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    total = 0
    for field in ("data", "binaryData", "stringData"):
        for k, v in (obj.get(field) or {}).items():
            if not _CONFIG_KEY.match(k) or len(k) > 253:
                causes.append(Cause("FieldValueInvalid", f'Invalid value: "{k}": a valid config key must consist '
                                                         "of alphanumeric characters, '-', '_' or '.' (e.g. "
                                                         "'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
                                                         "for validation is '[-._a-zA-Z0-9]+')", f"{field}[{k}]"))
            total += len(k) + len(str(v))
    if total > CONFIG_MAX_BYTES:
        causes.append(Cause("FieldValueTooLong", f"Too long: must have at most {CONFIG_MAX_BYTES} bytes", "data"))
    return causes
