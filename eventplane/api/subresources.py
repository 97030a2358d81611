"""Subresources: status (get, update, patch), scale (as autoscaling/v1 Scale),
pods/binding (the scheduler's write), pods/eviction (eviction.py: disruption
budgets) and namespaces/finalize (the namespace controller's last write).

Fed by the REST handler for paths with a subresource; each turns into one
registry operation on the parent object.
"""
from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from eventplane.objects import errors
from eventplane.objects.events import EventType
from eventplane.objects.schema import ResourceInfo
from eventplane.objects.selectors import LabelSelector
from eventplane.store import Append

from .requestinfo import RequestInfo


async def handle(handler, request: web.Request, ri: RequestInfo, info: ResourceInfo) -> web.StreamResponse:
    from .rest import WRITE_PARAMS, _check_params, caller_of, read_body, respond, write_options

    registry = handler.registry
    method, sub = request.method, ri.subresource
    if sub == "status":
        if method == "GET":
            return respond(request, await registry.get(info, ri.namespace, ri.name))
        _check_params(request, WRITE_PARAMS)
        body, dups = await read_body(request)
        if method == "PUT":
            result = await registry.update(info, ri.namespace, ri.name, body, caller_of(request),
                                           write_options(request, dups), subresource="status")
        elif method == "PATCH":
            result = await registry.patch(info, ri.namespace, ri.name, request.content_type, body,
                                          caller_of(request), write_options(request, dups), subresource="status")
        else:
            raise errors.MethodNotSupportedError("the server does not allow this method on the requested resource")
        return respond(request, result.object, warnings=result.warnings)
    if sub == "scale":
        return await _scale(registry, request, ri, info)
    if sub == "binding" and method == "POST":
        body, _ = await read_body(request)
        await bind(registry, info, ri.namespace, ri.name, body, caller_of(request), write_options(request))
        return respond(request, _success(), status=201)
    if sub == "eviction" and method == "POST":
        from .eviction import evict

        body, _ = await read_body(request)
        await evict(registry, handler.catalog(), info, ri.namespace, ri.name, body, caller_of(request),
                    write_options(request))
        return respond(request, _success(), status=201)
    if sub == "finalize" and method == "PUT":  # namespaces/finalize: spec.finalizers alone
        _check_params(request, WRITE_PARAMS)
        body, dups = await read_body(request)
        result = await registry.update(info, ri.namespace, ri.name, body, caller_of(request),
                                       write_options(request, dups), subresource="finalize")
        return respond(request, result.object, warnings=result.warnings)
    raise errors.MethodNotSupportedError("the server does not allow this method on the requested resource")


def _success() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _scale_paths(info: ResourceInfo) -> tuple[list[str], list[str], list[str] | None]:
    """Where replicas and the selector live: the CRD's paths (".spec.replicas"), or Kubernetes'
    fixed ones for built-in kinds."""
    paths = info.subresources["scale"].paths if "scale" in info.subresources else {}

    def split(path: str | None) -> list[str] | None:
        return [p for p in path.split(".") if p] if path else None

    if info.custom:
        return (split(paths.get("specReplicasPath")) or ["spec", "replicas"],
                split(paths.get("statusReplicasPath")) or ["status", "replicas"],
                split(paths.get("labelSelectorPath")))
    return ["spec", "replicas"], ["status", "replicas"], ["spec", "selector"]


def _at(obj: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def scale_of(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    m = obj["metadata"]
    spec_path, status_path, selector_path = _scale_paths(info)
    selector = _at(obj, selector_path) if selector_path else None
    if isinstance(selector, dict) and ("matchLabels" in selector or "matchExpressions" in selector):
        selector = str(LabelSelector.from_object(selector))
    elif isinstance(selector, dict):     # a ReplicationController's map selector
        selector = ",".join(f"{k}={v}" for k, v in selector.items())
    elif not isinstance(selector, str):  # a CRD's labelSelectorPath holds the string itself
        selector = ""
    replicas, current = _at(obj, spec_path), _at(obj, status_path)
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in m},
            "spec": {"replicas": replicas if isinstance(replicas, int) else 0},
            "status": {"replicas": current if isinstance(current, int) else 0,
                       **({"selector": selector} if selector else {})}}


async def _scale(registry, request: web.Request, ri: RequestInfo, info: ResourceInfo) -> web.StreamResponse:
    from .rest import WRITE_PARAMS, _check_params, caller_of, read_body, respond, write_options

    if request.method == "GET":
        return respond(request, scale_of(info, await registry.get(info, ri.namespace, ri.name)))
    _check_params(request, WRITE_PARAMS)
    body, _ = await read_body(request)
    current = await registry.get(info, ri.namespace, ri.name)
    if request.method == "PUT":
        scale = body
    elif request.method == "PATCH":
        from eventplane.objects.patch import apply_json_patch, apply_merge_patch

        base = scale_of(info, current)
        scale = apply_json_patch(base, body) if isinstance(body, list) else apply_merge_patch(base, body)
    else:
        raise errors.MethodNotSupportedError("the server does not allow this method on the requested resource")
    replicas = ((scale or {}).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.InvalidError(f'Scale.autoscaling "{ri.name}" is invalid: spec.replicas: Invalid value: '
                                  f"{replicas}: must be greater than or equal to 0")
    new = copy.deepcopy(current)
    spec_path = _scale_paths(info)[0]
    target = new
    for key in spec_path[:-1]:
        target = target.setdefault(key, {})
    target[spec_path[-1]] = replicas
    rv = ((scale or {}).get("metadata") or {}).get("resourceVersion")
    if rv:
        new["metadata"]["resourceVersion"] = rv
    result = await registry.update(info, ri.namespace, ri.name, new, caller_of(request), write_options(request))
    return respond(request, scale_of(info, result.object))


async def bind(registry, info: ResourceInfo, namespace: str, name: str, binding: Any, caller, opts) -> dict:
    """pods/binding: set spec.nodeName once; a pod already bound is a conflict."""
    target = ((binding or {}).get("target") or {})
    node = target.get("name")
    if not node:
        raise errors.InvalidError(f'Binding "{name}" is invalid: target.name: Required value',
                                  causes=(errors.Cause("FieldValueRequired", "Required value", "target.name"),))
    from .registry import stream_of

    pod = await registry.get(info, namespace, name)
    if (pod.get("spec") or {}).get("nodeName"):
        raise errors.ConflictError(f"Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is "
                                   f"already assigned to node \"{pod['spec']['nodeName']}\"",
                                   name=name, kind="pods/binding")
    if pod["metadata"].get("deletionTimestamp"):
        raise errors.ConflictError(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being '
                                   "deleted, cannot be assigned to a host", name=name, kind="pods/binding")
    new = copy.deepcopy(pod)
    new["spec"]["nodeName"] = node
    conditions = [c for c in (new.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
    from .strategy import now_rfc3339
    conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": now_rfc3339()})
    new["status"]["conditions"] = conditions
    expected = int(pod["metadata"]["resourceVersion"])
    [appended] = await registry.store.append(
        Append(stream_of(info, namespace, name), EventType.BOUND, new, uid=pod["metadata"]["uid"],
               expected_version=expected), caller.context("bind"))
    new["metadata"]["resourceVersion"] = str(appended.position)
    return new
