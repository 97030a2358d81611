"""Audit: every API request, REST or NATS, becomes an audit record; and the query of them.

Fed by `middleware(auditor)` — the outermost aiohttp middleware, so it sees
the status `errors_and_auth` answered (401s included) and the user it
authenticated — and by `Auditor.record_nats`, called once per request by
natsapi.py. The policy (eventplane/objects/auditpolicy.py) decides the level;
records go to `eventplane.store.audit.AuditWriter`, which writes them in
batches off the request path. `Auditor.serve_query` answers
`GET /apis/audit.eventplane.io/v1/events` with an audit.k8s.io/v1 EventList.

One record per request, at stage ResponseComplete (Panic when the handler
raised past every error handler); a watch is recorded when it ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from eventplane import config
from eventplane.auth.identity import ANONYMOUS, User
from eventplane.objects import errors
from eventplane.objects.auditpolicy import DEFAULT_POLICY, Attributes, Level, Policy, PolicyError, holds_secret, \
    outcome
from eventplane.store.audit import AuditQuery, AuditRecord, AuditWriter, query_audit

from . import codec
from .requestinfo import parse_path
from .strategy import new_uid

log = logging.getLogger("eventplane.api.audit")

GROUP = "audit.eventplane.io"
VERSION = "v1"
EVENTS_PATH = f"/apis/{GROUP}/{VERSION}/events"
MAX_AUDITED_BODY = 3 * 1024 * 1024  # app.py's client_max_size: a larger body is refused before it is read
DEFAULT_LIMIT = 500
OUTCOMES = ("allowed", "denied", "error")
_BODY_METHODS = ("POST", "PUT", "PATCH")
# NATS subjects → Kubernetes verbs (server-side apply is a patch, as in Kubernetes)
_NATS_VERBS = {"get": "get", "list": "list", "watch": "watch", "create": "create", "update": "update",
               "patch": "patch", "apply": "patch", "delete": "delete"}
_SECRET_DROPPED = "eventplane.io/object-omitted"
REQUEST_INFO = "eventplane.request_info"  # request key: the RequestInfo the resource handler parsed


def load_policy(path: Path | None) -> Policy:
    """The policy of `--audit-policy-file`, or the built-in one; a bad file fails start-up loudly."""
    if path is None:
        return DEFAULT_POLICY
    try:
        return Policy.from_dict(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError, PolicyError) as exc:
        raise PolicyError(f"audit policy {path}: {exc}") from None


def now() -> datetime:
    return datetime.now(timezone.utc)


def parse_instant(text: str, *, at: datetime | None = None) -> datetime:
    """RFC 3339 (`2026-11-28T10:00:00Z`), or a time ago: `-10m`, `-2h`, `-1d` (also without the minus)."""
    text = text.strip()
    if text[:1] in ("-", "+") or (text and text[-1] in "smhd" and text[:1].isdigit()):
        try:
            return (at or now()) - timedelta(seconds=config.parse_duration(text.lstrip("-+")))
        except config.ConfigError:
            pass
    try:
        t = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise errors.BadRequestError(f"not a time: {text!r} (RFC 3339, e.g. 2026-11-28T10:00:00Z, or -10m)") \
            from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class Auditor:
    """The API server's audit: `await start()`, record requests, `await close()` after the listeners stop."""

    def __init__(self, writer: AuditWriter, policy: Policy, pool: Any) -> None:
        self.writer = writer
        self.policy = policy
        self.pool = pool

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    # --- REST -----------------------------------------------------------------------------------

    def record_http(self, request: web.Request, *, received: datetime, code: int, stage: str,
                    response: web.StreamResponse | None, body: bytes | None) -> None:
        try:
            attrs, info_fields = _http_attributes(request)
            decision = self.policy.decide(attrs)
            if not decision.records(stage):
                return
            level = decision.level
            annotations = {"eventplane.io/request-id": request.get("request_id", "")}
            request_object = response_object = None
            if level is Level.REQUEST or level is Level.REQUEST_RESPONSE:  # the levels that record bodies
                if body:
                    request_object = _decoded(body, request.content_type)
                if level is Level.REQUEST_RESPONSE and isinstance(response, web.Response) \
                        and isinstance(response.body, bytes) and "json" in (response.content_type or ""):
                    response_object = _decoded(response.body, codec.JSON)
                request_object, response_object = _without_secrets(request_object, response_object, annotations)
            headers = request.headers
            self.writer.record(AuditRecord(
                new_uid(), stage, level.value, received, now(), attrs.user, attrs.verb, request.path_qs,
                outcome(code), "rest", attrs.groups, **info_fields,
                source_ip=_source_ips(headers.get("X-Forwarded-For"), request.remote),
                user_agent=headers.get("User-Agent"), response_code=code, request_object=request_object,
                response_object=response_object, annotations=annotations))
        except Exception:
            log.exception("could not make the audit record of %s %s", request.method, request.path)

    # --- NATS -----------------------------------------------------------------------------------

    def record_nats(self, natsapi: Any, *, subject: str, request: dict[str, Any] | None, user: User | None,
                    headers: dict[str, str], code: int, value: Any, received: datetime) -> None:
        """One NATS API request (natsapi.py calls this after answering)."""
        try:
            op = subject[len(natsapi.prefix) + 1:]
            req = request if isinstance(request, dict) else {}
            body = req.get("body")
            user = user or ANONYMOUS
            fields: dict[str, Any] = {"name": str(req.get("name") or "")}
            if isinstance(req.get("subresource"), str):
                fields["subresource"] = req["subresource"]
            resource_request = op in _NATS_VERBS
            verb = _NATS_VERBS.get(op, "get")  # discovery, and strays: a GET of a path on REST
            if op == "audit":  # a list of this group's events, as on REST
                resource_request, verb = True, "list"
                fields.update(api_group=GROUP, api_version=VERSION, resource="events")
            elif resource_request:
                try:
                    info = natsapi.resolve(req, body if isinstance(body, dict) else None)
                    from .natsrequest import namespace_of
                    collection = op in ("list", "watch") or (op == "delete" and not req.get("name"))
                    fields.update(api_group=info.group, api_version=info.version, resource=info.resource,
                                  namespace=namespace_of(info, req, body, collection=collection))
                except Exception:
                    pass  # the request named no known resource: recorded with what it did name
                if not fields["name"] and isinstance(body, dict) and op in ("update", "apply"):
                    fields["name"] = str((body.get("metadata") or {}).get("name") or "")
                if op == "delete" and not fields["name"]:
                    verb = "deletecollection"
            attrs = Attributes(user=user.name, groups=tuple(user.groups), verb=verb,
                               resource_request=resource_request, path=f"/{op}",
                               api_group=fields.get("api_group", ""), resource=fields.get("resource", ""),
                               namespace=fields.get("namespace", ""), name=fields["name"])
            decision = self.policy.decide(attrs)
            if not decision.records("ResponseComplete"):
                return
            annotations = {"eventplane.io/request-id": headers.get("X-Request-Id", "")}
            request_object = body if decision.level in (Level.REQUEST, Level.REQUEST_RESPONSE) else None
            response_object = value if decision.level is Level.REQUEST_RESPONSE else None
            request_object, response_object = _without_secrets(request_object, response_object, annotations)
            self.writer.record(AuditRecord(
                audit_id=new_uid(), stage="ResponseComplete", level=decision.level.value, time_received=received,
                time_completed=now(), user_name=user.name, user_groups=tuple(user.groups), verb=verb,
                request_uri=subject, outcome=outcome(code), transport="nats", **fields,
                user_agent=headers.get("User-Agent"), response_code=code,
                request_object=_jsonable(request_object), response_object=_jsonable(response_object),
                annotations=annotations))
        except Exception:
            log.exception("could not make the audit record of the NATS request on %s", subject)

    # --- the query ------------------------------------------------------------------------------

    async def serve_query(self, request: web.Request) -> web.Response:
        """GET /apis/audit.eventplane.io/v1/events?user=&verb=&resource=&namespace=&name=&since=&until=
        &outcome=&transport=&limit= — the newest `limit` (default 500) matches, oldest first."""
        return web.json_response(await self.query(request.query))

    async def serve_nats(self, req: dict[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
        """The NATS API's `audit` subject: the same filters as the REST query, as the request's fields."""
        return await self.query({k: str(v) for k, v in req.items() if v is not None}), 200, []

    async def query(self, q: Mapping[str, str]) -> dict[str, Any]:
        try:
            limit = int(q.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise errors.BadRequestError(f"limit must be a whole number, not {q.get('limit')!r}") from None
        if limit <= 0:
            raise errors.BadRequestError("limit must be positive")
        if q.get("outcome") and q["outcome"] not in OUTCOMES:
            raise errors.BadRequestError(f"outcome must be one of {', '.join(OUTCOMES)}, not {q['outcome']!r}")
        at = now()
        query = AuditQuery(user=q.get("user") or None, verb=q.get("verb") or None,
                           resource=q.get("resource") or None,
                           namespace=q.get("namespace") if "namespace" in q else None,
                           name=q.get("name") or None, outcome=q.get("outcome") or None,
                           transport=q.get("transport") or None,
                           since=parse_instant(q["since"], at=at) if q.get("since") else None,
                           until=parse_instant(q["until"], at=at) if q.get("until") else None, limit=limit)
        await self.writer.flush(timeout=1.0)  # read your own requests: what finished before this one is written
        rows = await query_audit(self.pool, query)
        return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                "items": [event_of(r) for r in rows]}


def middleware(auditor: Auditor):
    """The audit middleware; it must come first in the app's list (outside errors_and_auth)."""
    bodies: list[Any] = [None, False]  # (policy, whether it may record bodies): asked once per policy

    @web.middleware
    async def audit(request: web.Request, handler):
        received = now()
        body = None
        if bodies[0] is not auditor.policy:
            bodies[:] = [auditor.policy, auditor.policy.may_record_requests]
        if bodies[1] and request.method in _BODY_METHODS and request.can_read_body \
                and request.content_length is not None and request.content_length <= MAX_AUDITED_BODY:
            try:
                body = await request.read()  # aiohttp keeps it: the handler reads the same bytes
            except Exception:
                body = None  # the handler meets the same failure and answers it
        code, stage, response = 0, "ResponseComplete", None
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        except asyncio.CancelledError:
            # the client went away (handler_cancellation): a watch ends so, after its 200 was sent
            code = 200 if _watching(request) else 499
            raise
        except BaseException:
            code, stage = 500, "Panic"
            raise
        finally:
            auditor.record_http(request, received=received, code=code, stage=stage, response=response, body=body)

    return audit


def _watching(request: web.Request) -> bool:
    return request.method == "GET" and (request.query.get("watch") in ("true", "1") or "/watch/" in request.path)


def _http_attributes(request: web.Request) -> tuple[Attributes, dict[str, str]]:
    user: User = request.get("user") or ANONYMOUS
    info = request.get(REQUEST_INFO)  # the resource handler's own parse of the path, when it ran
    if info is None:
        try:
            info = parse_path(request.path)
        except errors.EventplaneError:
            info = None
    method = request.method
    if info is None:
        return Attributes(user=user.name, groups=tuple(user.groups), verb=method.lower(), resource_request=False,
                          path=request.path), {}
    if method in ("GET", "HEAD"):
        verb = "watch" if info.watch_path or request.query.get("watch") in ("true", "1") else \
            "get" if info.name else "list"
    elif method == "DELETE":
        verb = "delete" if info.name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    fields = {"api_group": info.group, "api_version": info.version, "resource": info.resource,
              "subresource": info.subresource, "namespace": info.namespace, "name": info.name}
    return Attributes(user.name, tuple(user.groups), verb, True, info.group, info.resource, info.subresource,
                      info.namespace, info.name, request.path), fields


def _source_ips(forwarded: str | None, remote: str | None) -> str | None:
    """X-Forwarded-For's addresses, then the peer's, comma-separated; None when there is none."""
    ips = [ip.strip() for ip in forwarded.split(",") if ip.strip()] if forwarded else []
    return ", ".join([*ips, remote or ""]).strip(", ") or None


def _decoded(body: bytes, content_type: str | None) -> Any:
    try:
        return codec.plain(codec.decode(body, content_type))
    except Exception:
        return {"eventplane.io/undecodable": f"{len(body)} bytes of {content_type or 'unknown type'}"}


def _without_secrets(request_object: Any, response_object: Any, annotations: dict[str, str]) -> tuple[Any, Any]:
    """Drop any object that is or holds a Secret, whatever level the policy chose."""
    if holds_secret(request_object):
        request_object = None
        annotations[_SECRET_DROPPED] = "a Secret is recorded at Metadata at most"
    if holds_secret(response_object):
        response_object = None
        annotations[_SECRET_DROPPED] = "a Secret is recorded at Metadata at most"
    return request_object, response_object


def _jsonable(value: Any) -> Any:
    """msgpack bodies may hold bytes; a record stores JSON."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=lambda v: v.decode("utf-8", "replace")
                                 if isinstance(v, bytes) else str(v)))


def _micro(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_of(row: dict[str, Any]) -> dict[str, Any]:
    """One audit_events row as an audit.k8s.io/v1 Event."""
    ref = {k: v for k, v in (("resource", row["resource"]), ("namespace", row["namespace"]),
                             ("name", row["name"]), ("apiGroup", row["api_group"]),
                             ("apiVersion", row["api_version"]), ("subresource", row["subresource"])) if v}
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": row["level"], "auditID": str(row["audit_id"]),
        "stage": row["stage"], "requestURI": row["request_uri"], "verb": row["verb"],
        "user": {"username": row["user_name"], **({"groups": list(row["user_groups"])} if row["user_groups"]
                                                 else {})},
        "sourceIPs": [ip.strip() for ip in (row["source_ip"] or "").split(",") if ip.strip()],
        "userAgent": row["user_agent"] or "",
        "responseStatus": {"metadata": {}, "code": row["response_code"] or 0},
        "requestReceivedTimestamp": _micro(row["time_received"]), "stageTimestamp": _micro(row["time_completed"]),
        "annotations": {**(row["annotations"] or {}), "eventplane.io/transport": row["transport"],
                        "eventplane.io/outcome": row["outcome"]},
    }
    if ref:
        event["objectRef"] = ref
    if row["request_object"] is not None:
        event["requestObject"] = row["request_object"]
    if row["response_object"] is not None:
        event["responseObject"] = row["response_object"]
    return event


# --- routes and discovery of audit.eventplane.io --------------------------------------------------

def add_routes(router: web.UrlDispatcher, auditor: Auditor) -> None:
    """Before /apis/{group}… so that this group's paths are not taken for the catalog's."""
    async def group(_request: web.Request) -> web.Response:
        return web.json_response(api_group())

    async def resources(_request: web.Request) -> web.Response:
        return web.json_response(resource_list())

    router.add_get(f"/apis/{GROUP}", group)
    router.add_get(f"/apis/{GROUP}/", group)
    router.add_get(f"/apis/{GROUP}/{VERSION}", resources)
    router.add_get(f"/apis/{GROUP}/{VERSION}/", resources)
    router.add_get(EVENTS_PATH, auditor.serve_query)


def api_group() -> dict[str, Any]:
    gv = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
            "resources": [{"name": "events", "singularName": "event", "namespaced": False, "kind": "Event",
                           "verbs": ["list"]}]}


def aggregated_item() -> dict[str, Any]:
    return {"metadata": {"name": GROUP, "creationTimestamp": None},
            "versions": [{"version": VERSION, "freshness": "Current", "resources": [
                {"resource": "events", "responseKind": {"group": GROUP, "version": VERSION, "kind": "Event"},
                 "scope": "Cluster", "singularResource": "event", "verbs": ["list"]}]}]}
