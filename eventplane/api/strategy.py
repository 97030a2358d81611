"""What the API server does to an object before it is stored, per kind and verb —
Kubernetes' "REST strategies": server-set metadata, status handling on create
and on the status subresource, generation, defaults, field validation, and
the checks of ObjectMeta.

Pure functions over dicts: fed by the registry with the request body and the
current object; their result is what the registry appends.
"""
from __future__ import annotations

import copy
import os
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from eventplane.objects import defaults, errors, meta
from eventplane.objects.schema import Node, ResourceInfo
from eventplane.objects.schema.fields import check_fields

# Kinds whose status is kept on create (the agent that creates them reports it at once).
STATUS_ON_CREATE = {("", "nodes"), ("", "events")}
SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
               "selfLink")


_SERVER_META_AND_VERSION = SERVER_META + ("resourceVersion",)

_clock: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """Kubernetes timestamps have second precision; format each second once."""
    global _clock
    second = int(time.time())
    if _clock[0] != second:
        _clock = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _clock[1]


_entropy = bytearray()


def _forget_entropy() -> None:
    _entropy.clear()  # a forked child must not make the ids its parent makes


os.register_at_fork(after_in_child=_forget_entropy)


def _random16() -> bytearray:
    """16 bytes of os.urandom (uuid.uuid4's source), read 4 KiB at a time: one system call per 256
    ids instead of one each. A forked child reads its own."""
    if len(_entropy) < 16:
        _entropy[:] = os.urandom(4096)
    out = _entropy[-16:]
    del _entropy[-16:]
    out[6] = (out[6] & 0x0F) | 0x40  # version 4
    out[8] = (out[8] & 0x3F) | 0x80  # RFC 4122 variant
    return out


def new_uid() -> str:
    """`str(uuid.uuid4())`, cheaper: uids and request ids are made on every write."""
    h = _random16().hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_uuid() -> uuid.UUID:
    """`uuid.uuid4()`, from the same batched entropy as new_uid."""
    return uuid.UUID(bytes=bytes(_random16()))


_nodes: dict[tuple[str, str, str], tuple[Any, Node]] = {}


def schema_node(info: ResourceInfo) -> Node:
    """One Node per served kind (and CRD schema), so that what is derived from it — the walkable
    schemas of managedFields and patches — is built once, not per request. A CRD whose schema
    changed gets a new one (the cached entry holds the schema it was built from)."""
    key = (info.group, info.version, info.resource)
    cached = _nodes.get(key)
    if cached is not None and cached[0] is info.schema:
        return cached[1]
    node = Node.custom(info.schema) if info.custom else Node.definition(info.definition or "")
    _nodes[key] = (info.schema, node)
    return node


def check_type_meta(info: ResourceInfo, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.BadRequestError(f"{info.kind} in version \"{info.version}\" cannot be handled as a "
                                     f"{info.kind}: the body must be a JSON object")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != info.api_version:
        raise errors.BadRequestError(f"the API version in the data ({api_version}) does not match the expected "
                                     f"API version ({info.api_version})")
    if kind and kind != info.kind:
        raise errors.BadRequestError(f"{kind} in version \"{info.version}\" cannot be handled as a {info.kind}: "
                                     f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
    body["apiVersion"], body["kind"] = info.api_version, info.kind
    if not isinstance(body.get("metadata", {}), dict):
        raise errors.BadRequestError(f"{info.kind} in version \"{info.version}\" cannot be handled as a "
                                     f"{info.kind}: metadata must be an object")
    body.setdefault("metadata", {})
    return body


def validate_fields(info: ResourceInfo, obj: dict[str, Any], mode: str, duplicates: list[str]) -> list[str]:
    """Apply fieldValidation; return the warnings to send (Warn mode)."""
    problems = check_fields(obj, schema_node(info), prune=mode != "Strict")
    if problems.type_errors:
        raise errors.BadRequestError(f"{info.kind} in version \"{info.version}\" cannot be handled as a "
                                     f"{info.kind}: {problems.type_errors[0]}")
    messages = [f'unknown field "{p}"' for p in problems.unknown] + [f'duplicate field "{p}"' for p in duplicates]
    if mode == "Strict" and messages:
        raise errors.BadRequestError("strict decoding error: " + ", ".join(messages))
    return messages if mode == "Warn" else []


def _has_status_subresource(info: ResourceInfo) -> bool:
    return "status" in info.subresources


def prepare_create(info: ResourceInfo, obj: dict[str, Any], *, namespace: str, rng: random.Random) -> dict[str, Any]:
    m = obj["metadata"]
    if info.namespaced:
        if m.get("namespace") and m["namespace"] != namespace:
            raise errors.BadRequestError("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
        m["namespace"] = namespace
    else:
        m.pop("namespace", None)
    if not m.get("name") and m.get("generateName"):
        m["name"] = meta.generate_name(m["generateName"], rng,
                                       label_rule=meta.name_rule_for(info.group, info.resource) == "label")
    for key in _SERVER_META_AND_VERSION:
        m.pop(key, None)
    m["uid"] = new_uid()
    m["creationTimestamp"] = now_rfc3339()
    if info.custom or defaults.tracks_generation(info.group, info.kind):
        m["generation"] = 1
    if _has_status_subresource(info) and (info.group, info.resource) not in STATUS_ON_CREATE:
        obj.pop("status", None)
    if not info.custom:
        defaults.apply_defaults(info.group, info.version, info.kind, obj)
        defaults.prepare_for_create(info.group, info.kind, obj)
    _initial_status(info, obj)
    return obj


def _initial_status(info: ResourceInfo, obj: dict[str, Any]) -> None:
    if (info.group, info.resource) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        # Names are accepted and the resource is served at once: the catalog follows the CRD's events.
        spec = obj.get("spec") or {}
        now = now_rfc3339()
        obj["status"] = {
            "acceptedNames": spec.get("names") or {},
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now}],
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }


def prepare_update(info: ResourceInfo, new: dict[str, Any], old: dict[str, Any], *, subresource: str = "") -> dict[str, Any]:
    """Carry server-owned state from `old` into `new` as Kubernetes' strategies do."""
    m, om = new["metadata"], old["metadata"]
    for key in ("name", "namespace"):
        if key in om:
            m[key] = om[key]
        else:
            m.pop(key, None)
    for key in SERVER_META:
        if key in om:
            m[key] = om[key]
        else:
            m.pop(key, None)
    if subresource == "status":
        return prepare_status_update(info, new, old)
    if (info.group, info.resource) == ("", "pods"):
        _keep_pod_priority(new, old)
    if (info.group, info.resource) == ("", "namespaces"):
        # namespaces/finalize changes spec.finalizers alone; any other update keeps them (namespaceStrategy).
        finalizers = (new.get("spec") or {}).get("finalizers") if subresource == "finalize" else \
            (old.get("spec") or {}).get("finalizers")
        if subresource == "finalize":
            new.clear()
            new.update(copy.deepcopy(old))
        if finalizers:
            new.setdefault("spec", {})["finalizers"] = list(finalizers)
        else:
            (new.get("spec") or {}).pop("finalizers", None)
    if _has_status_subresource(info):
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if not info.custom:
        defaults.apply_defaults(info.group, info.version, info.kind, new)
    if "generation" in om and defaults.generation_relevant(info.kind, old, new, group=info.group,
                                                          status_subresource=_has_status_subresource(info)):
        m["generation"] = om["generation"] + 1
    return new


# --- the status subresource -------------------------------------------------------------------------

# metav1.ResetObjectMetaForStatus: the metadata a status write may not change, for the kinds that opt
# in (generation and selfLink are the server's on every update anyway).
RESET_OBJECT_META_FOR_STATUS = ("deletionTimestamp", "generation", "selfLink", "labels", "annotations",
                                "finalizers", "ownerReferences")

# Each kind's status strategy (PrepareForUpdate of its StatusStrategy): every kind keeps its spec —
# all top-level fields but metadata and status — and these metadata fields of the stored object. The
# rest of the metadata (labels, annotations, finalizers, ownerReferences) a status write may change,
# as in Kubernetes. A built-in kind not named here is one of the newer kinds that opt in to
# ResetObjectMetaForStatus.
STATUS_KEEPS_METADATA: dict[tuple[str, str], tuple[str, ...]] = {
    # Spec alone ("newX.Spec = oldX.Spec").
    **{key: () for key in (("", "nodes"), ("", "services"), ("", "namespaces"), ("", "persistentvolumes"),
                           ("", "persistentvolumeclaims"), ("", "resourcequotas"), ("", "replicationcontrollers"),
                           ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                           ("batch", "jobs"), ("batch", "cronjobs"), ("policy", "poddisruptionbudgets"))},
    # podStatusStrategy: "don't allow the pods/status endpoint to touch owner references since old
    # kubelets corrupt them in a way that breaks garbage collection"; deletionTimestamp is reset too.
    ("", "pods"): ("deletionTimestamp", "ownerReferences"),
    # deploymentStatusStrategy keeps spec and labels: the controller writes the revision annotation
    # together with status.
    ("apps", "deployments"): ("labels",),
    # The CRD status strategy, by hand ("TODO: Update after ResetObjectMetaForStatus is added").
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("labels", "annotations", "ownerReferences",
                                                            "generation", "selfLink"),
}


def prepare_status_update(info: ResourceInfo, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """What a write to the status subresource keeps of the stored object: silently, as Kubernetes'
    status strategies do (a spec in the body is ignored, not refused). A custom resource keeps
    everything but status (customresource statusStrategy: the old object, with the new status);
    a built-in kind keeps its spec and the metadata STATUS_KEEPS_METADATA names. managedFields are
    the field manager's (a subresource write starts from the stored ones)."""
    status = new.get("status")
    if info.custom:
        new.clear()
        new.update(copy.deepcopy(old))
    else:
        m, om = new["metadata"], old["metadata"]
        for key in [k for k in new if k not in ("metadata", "status", "apiVersion", "kind")]:
            del new[key]
        for key, value in old.items():
            if key not in ("metadata", "status", "apiVersion", "kind"):
                new[key] = copy.deepcopy(value)
        for key in STATUS_KEEPS_METADATA.get((info.group, info.resource), RESET_OBJECT_META_FOR_STATUS):
            if key in om:
                m[key] = copy.deepcopy(om[key])
            else:
                m.pop(key, None)
    if status is None:
        new.pop("status", None)
    else:
        new["status"] = status
        if not info.custom:
            _status_backfill(info, status, old.get("status") or {})
    return new


def _status_backfill(info: ResourceInfo, status: dict[str, Any], old: dict[str, Any]) -> None:
    key = (info.group, info.resource)
    if not isinstance(status, dict):
        return
    if key == ("", "pods"):
        # The QoS class is set at creation and immutable: a kubelet that drops it gets it back.
        if not status.get("qosClass") and old.get("qosClass"):
            status["qosClass"] = old["qosClass"]
    elif key == ("", "persistentvolumes"):
        # lastPhaseTransitionTime: kept while the phase stays, set now when it changes (unless the
        # writer set a new time itself).
        if status.get("phase") == old.get("phase"):
            if status.get("lastPhaseTransitionTime") is None and old.get("lastPhaseTransitionTime"):
                status["lastPhaseTransitionTime"] = old["lastPhaseTransitionTime"]
        elif status.get("lastPhaseTransitionTime") in (None, old.get("lastPhaseTransitionTime")):
            status["lastPhaseTransitionTime"] = now_rfc3339()


def _keep_pod_priority(new: dict[str, Any], old: dict[str, Any]) -> None:
    """The Priority admission plugin's update half: the priority and preemptionPolicy it set at
    create stay when an update leaves them out (validation refuses any other change of them)."""
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return
    for key in ("priority", "preemptionPolicy"):
        if spec.get(key) is None and old_spec.get(key) is not None:
            spec[key] = old_spec[key]


_kind_rules: list = [None]


def validate_object(info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """ObjectMeta rules, then the kind's own rules; every broken rule is one cause of a 422."""
    validate = _kind_rules[0]
    if validate is None:  # validation.py imports this module: bound at the first call, not per call
        from .validation import validate
        _kind_rules[0] = validate
    causes = meta.validate_object_meta(obj, name_rule=meta.name_rule_for(info.group, info.resource),
                                       namespaced=info.namespaced, old=old, builtin=not info.custom)
    causes += validate(info, obj)
    if info.resource == "priorityclasses" and info.group == "scheduling.k8s.io":
        from .admission import validate_priority_class
        causes += validate_priority_class(obj, old)
    if causes:
        raise meta.invalid_error(info.qualified_kind, obj["metadata"].get("name", ""), causes,
                                 group=info.group, kind=info.kind)


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from resourceVersion and managedFields' timestamps: a no-op write."""
    def norm(o: dict[str, Any]) -> dict[str, Any]:
        o = dict(o)
        m = dict(o.get("metadata") or {})
        m.pop("resourceVersion", None)
        m["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in m.get("managedFields") or []]
        o["metadata"] = m
        return o
    return norm(a) == norm(b)
