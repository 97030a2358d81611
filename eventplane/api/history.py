"""The history API group, history.eventplane.io/v1: an object's versions, the difference
between two points of its life, and the causation chain behind it — over the event log.

    GET /apis/history.eventplane.io/v1/history/<object path>[?uid=UID]
    GET /apis/history.eventplane.io/v1/diff/<object path>?from=AT&to=AT[&field=PATH]
    GET /apis/history.eventplane.io/v1/why/<object path>[?resourceVersion=RV]
    GET /apis/history.eventplane.io/v1/positions?at=AT

<object path> is the object's ordinary path without the leading slash
(api/v1/namespaces/default/pods/web). AT is what `asOf` accepts on every get and
list (see `resolve_as_of`): a resourceVersion, an RFC 3339 time or a negative
duration (-10m). Fed by aiohttp (routes added in app.py) and by the NATS API's history,
diff, why and positions subjects (natsapi.py), which call the same query functions;
reads the store's history module; docs/history.md documents the shapes.
"""
from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta, timezone
from collections.abc import Mapping
from typing import Any

import yaml
from aiohttp import web

from eventplane.objects import errors
from eventplane.objects.events import Event, EventType, StreamId, unpack
from eventplane.objects.schema import ResourceInfo
from eventplane.objects.summary import summarize
from eventplane.store import history as store_history
from eventplane.store import reads

from .registry import not_found, stream_of
from .requestinfo import parse_path

GROUP = "history.eventplane.io"
VERSION = "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"

# (resource, kind): the path segments, as discovery lists them.
RESOURCES = (("history", "ObjectHistory"), ("diff", "ObjectDiff"), ("why", "CausationChain"),
             ("positions", "Position"))

_DURATION = re.compile(r"^-((?:\d+(?:\.\d+)?(?:h|m|s|ms))+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


# --- asOf ---------------------------------------------------------------------------------------

def parse_as_of(text: str, *, now: datetime | None = None) -> int | datetime:
    """A resourceVersion (int) or a point in time (aware datetime) from `asOf`'s three spellings."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = _DURATION.match(text)
    if m:
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(m.group(1)))
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise errors.BadRequestError(
            f'invalid asOf "{text}": expected a resourceVersion (e.g. 42), an RFC 3339 time with a zone '
            '(e.g. 2026-01-02T15:04:05Z) or a negative duration (e.g. -10m, -2h30m)')
    return when


async def resolve_as_of(pool, text: str) -> int:
    """The position a read `asOf=text` is served at: the resourceVersion itself, or the last event
    committed at or before the time. A position beyond the head, or a time in the future, is refused."""
    now = datetime.now(timezone.utc)
    at = parse_as_of(text, now=now)
    head = await reads.head(pool)
    if isinstance(at, int):
        if at > head:
            raise errors.ServerTimeoutError(f"Too large resource version: asOf={at} is beyond the newest "
                                            f"resourceVersion {head}")
        return at
    if at > now:
        raise errors.BadRequestError(f'asOf "{text}" is in the future (server time {_time(now)}): '
                                     "the past can be read, the future cannot")
    return await store_history.position_at(pool, at)


async def read_position(pool, as_of: str, *, resource_version: str = "", match: str = "") -> int:
    """The position of a get or list with `asOf` (REST's query parameter, a NATS request's field)."""
    if resource_version or match:
        raise errors.BadRequestError("asOf cannot be combined with resourceVersion or resourceVersionMatch: "
                                     "asOf already names the point the read is served at")
    return await resolve_as_of(pool, as_of)


# --- handlers -----------------------------------------------------------------------------------

class HistoryHandler:
    def __init__(self, resources) -> None:
        self.resources = resources  # rest.ResourceHandler: the registry (and store) and the catalog

    @property
    def pool(self):
        return self.resources.registry.store.pool

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Before /apis/{group}… so that this group's paths are not taken for the catalog's."""
        router.add_get(f"/apis/{GROUP}", self.group)
        router.add_get(f"/apis/{GROUP}/", self.group)
        router.add_get(PREFIX, self.resource_list)
        router.add_get(PREFIX + "/", self.resource_list)
        router.add_get(PREFIX + "/positions", self.positions)
        router.add_get(PREFIX + "/history/{path:.+}", self.history)
        router.add_get(PREFIX + "/diff/{path:.+}", self.diff)
        router.add_get(PREFIX + "/why/{path:.+}", self.why)
        router.add_route("*", PREFIX + "/{tail:.*}", self.not_found)

    async def group(self, _request: web.Request) -> web.Response:
        return web.json_response(api_group())

    async def resource_list(self, _request: web.Request) -> web.Response:
        return web.json_response(resource_list())

    async def not_found(self, request: web.Request) -> web.Response:
        raise errors.NotFoundError(f"the server could not find the requested resource ({request.path}): "
                                   f"use {PREFIX}/{{history,diff,why}}/<object path> or {PREFIX}/positions?at=")

    def _target(self, request: web.Request):
        ri = parse_path("/" + request.match_info["path"])
        if ri is None or not ri.name or ri.subresource or ri.watch_path:
            raise errors.BadRequestError("name one object by its path, e.g. "
                                         f"{PREFIX}/history/api/v1/namespaces/default/pods/web")
        return self.resources.resolve(ri), ri.namespace, ri.name

    async def positions(self, request: web.Request) -> web.Response:
        return web.json_response(await position_of(self.pool, request.query))

    async def history(self, request: web.Request) -> web.Response:
        return web.json_response(await history_of(self.pool, *self._target(request), request.query))

    async def diff(self, request: web.Request) -> web.Response:
        return web.json_response(await diff_of(self.pool, *self._target(request), request.query))

    async def why(self, request: web.Request) -> web.Response:
        return web.json_response(await why_of(self.pool, *self._target(request), request.query))


# --- the queries, shared by REST (HistoryHandler) and NATS (natsapi.py) --------------------------
#
# Each takes the object (its resource, namespace and name) and the query's parameters as strings,
# REST's query string or the NATS request's fields, and answers the document both transports send.

async def position_of(pool, q: Mapping[str, str]) -> dict[str, Any]:
    at = q.get("at", "")
    if not at:
        raise errors.BadRequestError("the query parameter at is required (a resourceVersion, an RFC 3339 "
                                     "time or a negative duration)")
    position = await resolve_as_of(pool, at)
    return {"kind": "Position", "apiVersion": GROUP_VERSION, "at": at,
            "resourceVersion": str(position), "head": str(await reads.head(pool))}


async def history_of(pool, info: ResourceInfo, namespace: str, name: str, q: Mapping[str, str]) -> dict[str, Any]:
    stream = stream_of(info, namespace, name)
    events = await store_history.stream_history(pool, stream, uid=q.get("uid") or None)
    if not events:
        raise not_found(info, name)
    items = []
    last: dict[str, Any] = {}  # uid → its incarnation's object before the next event
    for e in events:
        obj = None if e.type == EventType.DELETED else unpack(e.payload)
        items.append({**step(e), "summary": summarize(last.get(e.uid), obj, event_type=e.type)})
        last[e.uid] = obj
    return {"kind": "ObjectHistory", "apiVersion": GROUP_VERSION, "object": reference(stream, info.version),
            "items": items}


async def diff_of(pool, info: ResourceInfo, namespace: str, name: str, q: Mapping[str, str]) -> dict[str, Any]:
    stream = stream_of(info, namespace, name)
    start = await resolve_as_of(pool, q["from"]) if q.get("from") else 0
    end = await resolve_as_of(pool, q["to"]) if q.get("to") else await reads.head(pool)
    if start > end:
        raise errors.BadRequestError(f"from (resourceVersion {start}) is after to (resourceVersion {end})")
    old = await reads.object_at(pool, stream, start) if start else None
    new = await reads.object_at(pool, stream, end)
    events = [e for e in await store_history.stream_history(pool, stream) if start < e.position <= end]
    if old is None and new is None and not events:
        raise not_found(info, name)
    doc: dict[str, Any] = {"kind": "ObjectDiff", "apiVersion": GROUP_VERSION,
                           "object": reference(stream, info.version),
                           "from": {"resourceVersion": str(start), "object": old},
                           "to": {"resourceVersion": str(end), "object": new}}
    field = q.get("field")
    if field:
        path = parse_field(field)
        values = [{"resourceVersion": str(start), "time": None, "actor": None, **_value(old, path)}]
        for e in events:
            value = _value(None if e.type == EventType.DELETED else unpack(e.payload), path)
            if value != {k: values[-1][k] for k in value}:
                values.append({"resourceVersion": str(e.position), "time": _time_us(e.occurred_at_us),
                               "actor": e.actor, **value})
        doc["field"], doc["values"] = field, values
    else:
        label = f"{info.resource}/{name}"
        doc["diff"] = unified(old, new, f"{label}@{start}", f"{label}@{end}")
    return doc


async def why_of(pool, info: ResourceInfo, namespace: str, name: str, q: Mapping[str, str]) -> dict[str, Any]:
    stream = stream_of(info, namespace, name)
    rv = q.get("resourceVersion")
    if rv:
        if not rv.isdigit():
            raise errors.BadRequestError(f'invalid resourceVersion "{rv}"')
        first = await store_history.event_at(pool, int(rv))
        if first is None or first.stream != stream:
            raise errors.NotFoundError(f"resourceVersion {rv} is not an event of {info.resource}/{name}")
    else:
        latest = await store_history.stream_history(pool, stream)
        if not latest:
            raise not_found(info, name)
        first = latest[-1]
    chain = list(reversed(await store_history.causation_chain(pool, first.position)))
    steps = []
    for i, e in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        steps.append({**step(e), "object": reference(e.stream),
                      "latencySeconds": (nxt.occurred_at_us - e.occurred_at_us) / 1e6 if nxt else None})
    root = chain[0]
    return {"kind": "CausationChain", "apiVersion": GROUP_VERSION, "object": reference(stream, info.version),
            "complete": root.causation is None,
            "totalSeconds": (chain[-1].occurred_at_us - root.occurred_at_us) / 1e6, "steps": steps}


# --- shapes -------------------------------------------------------------------------------------

def step(e: Event) -> dict[str, Any]:
    return {"resourceVersion": str(e.position), "time": _time_us(e.occurred_at_us), "actor": e.actor,
            "verb": e.verb, "type": e.type, "uid": e.uid,
            "causation": None if e.causation is None else str(e.causation), "requestID": e.request_id}


def reference(stream: StreamId, version: str | None = None) -> dict[str, Any]:
    ref = {"group": stream.group, "resource": stream.resource, "namespace": stream.namespace, "name": stream.name}
    if version:
        ref["version"] = version
    return ref


def unified(old: dict[str, Any] | None, new: dict[str, Any] | None, old_name: str, new_name: str) -> str:
    return "".join(difflib.unified_diff(_yaml(old).splitlines(keepends=True), _yaml(new).splitlines(keepends=True),
                                        old_name, new_name))


def _yaml(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return ""
    obj = {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)


_FIELD_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def parse_field(text: str) -> list[str | int]:
    """`spec.replicas`, `spec.template.spec.containers[0].image`, `metadata.labels[app.kubernetes.io/name]`."""
    path: list[str | int] = []
    for bracket, plain in _FIELD_TOKEN.findall(text.lstrip(".")):
        if plain:
            path.append(plain)
        elif bracket.isdigit():
            path.append(int(bracket))
        else:
            path.append(bracket.strip("'\""))
    if not path:
        raise errors.BadRequestError(f'invalid field path "{text}"')
    return path


def _value(obj: Any, path: list[str | int]) -> dict[str, Any]:
    for p in path:
        if isinstance(p, int) and isinstance(obj, list) and p < len(obj):
            obj = obj[p]
        elif isinstance(p, str) and isinstance(obj, dict) and p in obj:
            obj = obj[p]
        else:
            return {"present": False, "value": None}
    return {"present": True, "value": obj}


def _time(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time_us(us: int) -> str:
    return _time(datetime.fromtimestamp(us / 1e6, timezone.utc))


# --- discovery and OpenAPI ----------------------------------------------------------------------

def api_group() -> dict[str, Any]:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [{"name": r, "singularName": r, "namespaced": False, "kind": k, "verbs": ["get"]}
                          for r, k in RESOURCES]}


def aggregated_item() -> dict[str, Any]:
    resources = [{"resource": r, "responseKind": {"group": GROUP, "version": VERSION, "kind": k},
                  "scope": "Cluster", "singularResource": r, "verbs": ["get"]} for r, k in RESOURCES]
    return {"metadata": {"name": GROUP, "creationTimestamp": None},
            "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}]}


def openapi_v3() -> dict[str, Any]:
    def op(summary: str, params: list[str]) -> dict[str, Any]:
        return {"get": {"summary": summary, "parameters": [
            {"name": p, "in": "query", "schema": {"type": "string"}} for p in params] + [
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the object's path without the leading slash"}],
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "object"}}}}}}}

    positions = op("the resourceVersion at a time", ["at"])
    positions["get"]["parameters"] = positions["get"]["parameters"][:1]
    return {"openapi": "3.0.0", "info": {"title": "eventplane history", "version": VERSION},
            "paths": {f"{PREFIX}/history/{{path}}": op("an object's versions (ObjectHistory)", ["uid"]),
                      f"{PREFIX}/diff/{{path}}": op("an object between two points (ObjectDiff)",
                                                    ["from", "to", "field"]),
                      f"{PREFIX}/why/{{path}}": op("the causation chain of an object's event (CausationChain)",
                                                   ["resourceVersion"]),
                      f"{PREFIX}/positions": positions}}
