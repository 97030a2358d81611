"""REST handlers: Kubernetes resource paths → registry operations, and back.

Fed by aiohttp with requests that passed authentication; decodes query
options and bodies, calls the registry (or the watch module), and answers in
JSON, YAML or as a meta.k8s.io Table, with Kubernetes' Status for errors.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from . import codec, subresources, watching
from .audit import REQUEST_INFO
from .registry import Caller, Registry, WriteOptions
from .requestinfo import RequestInfo, parse_path

COMMON_PARAMS = {"pretty"}
READ_PARAMS = {"resourceVersion", "resourceVersionMatch", "labelSelector", "fieldSelector", "limit", "continue",
               "watch", "timeoutSeconds", "allowWatchBookmarks", "sendInitialEvents", "includeObject", "export",
               "exact", "timeout", "asOf"}
WRITE_PARAMS = {"dryRun", "fieldManager", "fieldValidation", "force", "timeout"}
DELETE_PARAMS = WRITE_PARAMS | {"gracePeriodSeconds", "propagationPolicy", "orphanDependents",
                                "labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                                "resourceVersionMatch", "ignoreStoreReadErrorWithClusterBreakingPotential"}


def caller_of(request: web.Request) -> Caller:
    user = request["user"]
    causation = request.headers.get("X-Eventplane-Causation")
    return Caller(user=user.name, groups=tuple(user.groups), request_id=request["request_id"],
                  trace_id=request.headers.get("traceparent", request["request_id"]),
                  causation=int(causation) if causation and causation.isdigit() else None,
                  idempotency_key=request.headers.get("Idempotency-Key"),
                  user_agent=request.headers.get("User-Agent", ""))


def _check_params(request: web.Request, allowed: set[str]) -> None:
    if not request.query_string:
        return  # most requests have none: the query is not parsed for them
    for key in request.query:
        if key not in allowed and key not in COMMON_PARAMS:
            raise errors.BadRequestError(f'unknown query parameter "{key}"')


def write_options(request: web.Request, duplicates: list[str] | None = None) -> WriteOptions:
    if not request.query_string:
        return WriteOptions(duplicates=duplicates or [])  # what an empty query gives below
    q = request.query
    dry_run = q.getall("dryRun", [])
    for d in dry_run:
        if d != "All":
            raise errors.BadRequestError(f'Invalid value: "{d}": supported values: "All"')
    validation = q.get("fieldValidation", "Warn")
    if validation not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequestError(f'Invalid value: "{validation}": fieldValidation must be one of '
                                     '"Ignore", "Warn", or "Strict"')
    force = q.get("force", "false").lower() == "true"
    return WriteOptions(dry_run=bool(dry_run), field_validation=validation,
                        field_manager=q.get("fieldManager", ""), force=force, duplicates=duplicates or [])


async def read_body(request: web.Request) -> tuple[Any, list[str]]:
    return codec.decode_body(await request.read(), request.content_type)


def respond(request: web.Request, value: Any, *, status: int = 200, warnings: list[str] | None = None,
            info: ResourceInfo | None = None) -> web.Response:
    accept = codec.parse_accept(request.headers.get("Accept"))
    if info is not None and codec.wants_table(accept) and value.get("kind") != "Status":
        from eventplane.objects.tables import table

        items = value["items"] if "items" in value and value.get("kind", "").endswith("List") else [value]
        include = request.query.get("includeObject") or _accept_param(accept, "includeObject") or "Metadata"
        value_out = table(info.resource, info.group, items, wide=True, now=datetime.now(timezone.utc),
                          include_object=include)
        meta = value.get("metadata") or {}
        value_out.setdefault("metadata", {})
        if "items" in value:
            value_out["metadata"].update({k: v for k, v in meta.items() if k in ("resourceVersion", "continue")})
        else:
            value_out["metadata"]["resourceVersion"] = meta.get("resourceVersion", "")
        value, media = value_out, codec.JSON
    else:
        media = codec.response_type(accept)
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join('299 - "%s"' % w.replace('"', '\\"') for w in warnings)
    return web.Response(body=codec.encode(value, media), status=status, content_type=media, headers=headers)


def _accept_param(accept: list[codec.MediaType], name: str) -> str | None:
    for m in accept:
        if name in m.params:
            return m.params[name]
    return None


class ResourceHandler:
    def __init__(self, registry: Registry, catalog, watches: watching.Watches) -> None:
        self.registry = registry
        self.catalog = catalog  # callable: the current catalog
        self.watches = watches

    def resolve(self, ri: RequestInfo) -> ResourceInfo:
        info = self.catalog().get(ri.group, ri.version, ri.resource)
        if info is None or (ri.namespace and not info.namespaced):
            raise errors.NotFoundError("the server could not find the requested resource")
        if ri.subresource and ri.subresource not in info.subresources:
            raise errors.NotFoundError("the server could not find the requested resource")
        return info

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        ri = parse_path(request.path)
        if ri is None:
            raise errors.NotFoundError("the server could not find the requested resource")
        request[REQUEST_INFO] = ri  # the audit record reads it instead of parsing the path again
        info = self.resolve(ri)
        method = request.method
        if ri.subresource:
            return await subresources.handle(self, request, ri, info)
        if method == "GET":
            _check_params(request, READ_PARAMS)
            if ri.watch_path or request.query.get("watch") in ("true", "1"):
                return await self.watches.serve(request, info, ri.namespace, ri.name)
            if ri.name:
                at = await _read_at(request, self.registry.store, cache=self.watches.cache)
                obj = await self.registry.get(info, ri.namespace, ri.name, at=at)
                return respond(request, obj, info=info)
            return respond(request, await self._list(request, info, ri.namespace), info=info)
        if method == "POST" and not ri.name:
            _check_params(request, WRITE_PARAMS)
            body, dups = await read_body(request)
            result = await self.registry.create(info, ri.namespace, body, caller_of(request),
                                                write_options(request, dups))
            return respond(request, result.object, status=201, warnings=result.warnings)
        if method == "PUT" and ri.name:
            _check_params(request, WRITE_PARAMS)
            body, dups = await read_body(request)
            result = await self.registry.update(info, ri.namespace, ri.name, body, caller_of(request),
                                                write_options(request, dups))
            return respond(request, result.object, status=201 if result.created else 200, warnings=result.warnings)
        if method == "PATCH" and ri.name:
            _check_params(request, WRITE_PARAMS)
            body, dups = await read_body(request)
            result = await self.registry.patch(info, ri.namespace, ri.name, request.content_type, body,
                                               caller_of(request), write_options(request, dups))
            return respond(request, result.object, status=201 if result.created else 200, warnings=result.warnings)
        if method == "DELETE":
            _check_params(request, DELETE_PARAMS)
            options = await _delete_options(request)
            if ri.name:
                obj = await self.registry.delete(info, ri.namespace, ri.name, options, caller_of(request),
                                                 write_options(request))
                return respond(request, obj)
            return respond(request, await self._delete_collection(request, info, ri.namespace, options))
        raise errors.MethodNotSupportedError(f"the server does not allow this method on the requested resource")

    async def _list(self, request: web.Request, info: ResourceInfo, namespace: str) -> dict[str, Any]:
        from eventplane.objects.selectors import FieldSelector, LabelSelector

        q = request.query
        label = LabelSelector.parse(q["labelSelector"]) if q.get("labelSelector") else None
        fields = FieldSelector.parse(q["fieldSelector"], resource=info.resource, group=info.group) if q.get("fieldSelector") else None
        try:
            limit = int(q.get("limit", "0") or 0)
        except ValueError:
            raise errors.BadRequestError(f'invalid limit "{q.get("limit")}"') from None
        return await self.registry.list(info, namespace, label_selector=label, field_selector=fields, limit=limit,
                                        continue_token=q.get("continue", ""),
                                        at=await _read_at(request, self.registry.store, list_=True, limit=limit,
                                                          cache=self.watches.cache))

    async def _delete_collection(self, request: web.Request, info: ResourceInfo, namespace: str,
                                 options: dict[str, Any]) -> dict[str, Any]:
        listed = await self._list(request, info, namespace)
        caller, opts = caller_of(request), write_options(request)
        deleted = []
        for item in listed["items"]:
            try:
                deleted.append(await self.registry.delete(info, namespace or item["metadata"].get("namespace", ""),
                                                          item["metadata"]["name"], options, caller, opts))
            except errors.NotFoundError:
                continue
        return {**listed, "items": deleted}


FUTURE_VERSION_WAIT = 3.0  # seconds a read of a version not yet seen waits, as kube-apiserver does


async def _read_at(request: web.Request, store: Any = None, *, list_: bool = False, limit: int = 0,
                   cache: Any = None) -> int | None:
    """The position a read must be served at: `asOf` (time travel, docs/history.md), or
    resourceVersionMatch=Exact (or a paged list with a resourceVersion); unset, "0" and
    NotOlderThan are served from the newest state."""
    rv = request.query.get("resourceVersion", "")
    match = request.query.get("resourceVersionMatch", "")
    as_of = request.query.get("asOf", "")
    if as_of:
        return await _as_of(store, as_of, rv, match)
    if match and not rv:
        raise errors.BadRequestError("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if match and match not in ("Exact", "NotOlderThan"):
        raise errors.BadRequestError(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                     '"Exact", "NotOlderThan"')
    if not rv:
        return None
    try:
        position = int(rv)
    except ValueError:
        raise errors.BadRequestError(f'invalid resource version "{rv}": resourceVersion must be an integer') \
            from None
    if cache is not None and position > cache.position and \
            not await cache.wait_for(position, FUTURE_VERSION_WAIT):
        # A version this server has not seen: wait a little for it, then give up as Kubernetes does.
        raise errors.ServerTimeoutError(
            f"Timeout: Too large resource version: {position}, current: {cache.position}",
            causes=(errors.Cause("ResourceVersionTooLarge", "Too large resource version"),))
    if match == "Exact" or (list_ and limit and rv != "0" and match != "NotOlderThan"):
        return position
    return None


async def _as_of(store: Any, as_of: str, rv: str, match: str) -> int:
    from .history import read_position

    return await read_position(store.pool, as_of, resource_version=rv, match=match)


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    body = await request.read()
    if body:
        decoded = codec.plain(codec.decode(body, request.content_type))
        if isinstance(decoded, dict):
            options.update(decoded)
    q = request.query
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q:
        options["orphanDependents"] = q["orphanDependents"] == "true"
    policy = options.get("propagationPolicy")
    if policy and policy not in ("Orphan", "Background", "Foreground"):
        raise errors.BadRequestError(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                     '"Foreground", "Background", "Orphan"')
    return options
