"""Small builders for test events: ConfigMap-shaped objects appended through the real store."""
from __future__ import annotations

import uuid
from typing import Any

from eventplane.objects.events import StreamId
from eventplane.store import Append, Context

ALICE = Context(actor="alice", verb="create", request_id="req-1", trace_id="trace-1")


def configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
            "data": dict(data)}


def cm_stream(name: str, namespace: str = "default") -> StreamId:
    return StreamId("", "configmaps", namespace, name)


def create(obj: dict[str, Any], resource: str = "configmaps", group: str = "") -> Append:
    meta = obj["metadata"]
    return Append(StreamId(group, resource, meta.get("namespace", ""), meta["name"]), "Created", obj, uid=meta["uid"])


def update(obj: dict[str, Any], *, expected: int | None, type: str = "Updated", resource: str = "configmaps",
           group: str = "") -> Append:
    meta = obj["metadata"]
    return Append(StreamId(group, resource, meta.get("namespace", ""), meta["name"]), type, obj, uid=meta["uid"],
                  expected_version=expected)


def delete(obj: dict[str, Any], *, expected: int | None = None, resource: str = "configmaps") -> Append:
    return update(obj, expected=expected, type="Deleted", resource=resource)


def ctx(actor: str = "alice", verb: str = "create", **kw: Any) -> Context:
    return Context(actor=actor, verb=verb, **kw)
