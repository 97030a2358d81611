"""The API over NATS request/reply: the registry's operations for components that
already hold a NATS connection, without HTTP, TLS handshakes or path routing.

Fed by a queue-group subscription on `PREFIX.>` (queue `eventplane-api`, so
every API server takes a share), authenticated with the same bearer tokens as
REST; answers with the registry's results, or a Kubernetes Status and the
header `Status: <code>`. natswatch.py streams `PREFIX.watch`.

Protocol (one request per subject, `PREFIX` defaults to `ep.api`):

- Subjects: get, list, create, apply, update, patch, delete, watch, discovery, audit (audit.py: the
  filters of GET /apis/audit.eventplane.io/v1/events as fields); history, diff, why (one object,
  named as for get, with the REST query parameters as fields: uid; from, to, field;
  resourceVersion), positions (at), verify (from, to) and replay (to, controller) — the
  documents of history.eventplane.io/v1 (history.py, integrity.py, docs/history.md). Export
  and import are REST-only: a whole log is a stream, not one request and its answer.
- Headers: `Authorization: Bearer <token>` (required), `Content-Type:
  application/msgpack` (else JSON; the answer comes in kind),
  `Idempotency-Key`, `X-Eventplane-Causation`, `X-Request-Id`, `traceparent`,
  `User-Agent` — as on REST, and they end in the event's envelope.
- Body: {"apiVersion", "kind" or "resource", "namespace", "name", "body",
  "labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch",
  "asOf" (get and list: time travel, as REST's asOf), "limit", "continue", "as": "Table",
  "patchType": "json|merge|strategic|apply" or a media type, "options": {dryRun, fieldManager,
  force, fieldValidation, propagationPolicy, gracePeriodSeconds, preconditions}}. `resource` may be
  anything `kubectl get` takes (`deploy`, `deployments.apps`). A namespaced
  single-object request without namespace uses the body's, else "default";
  list, watch and collection deletes without one span every namespace.
- apply: `body` is one manifest or a list of them (server-side apply, field
  manager `epctl` unless given); a list is answered with a `List` whose items
  are the applied objects or, for the documents that failed, their Status.
- create and update: `body` may be a list too (a controller's burst of pods,
  the scheduler's Events, a node's status writes): the items are written
  concurrently, so they share the
  group commit's transactions; each succeeds or fails alone, and the `List`
  answered holds each item's object or Status in the order given.
  `causations` (a list as long as `body`, of positions or nulls) gives each
  write its own cause; an `Idempotency-Key` cannot name a list.
- `subresource`: get, update and patch of `status`; update of `finalize`
  (namespaces); create of `binding` (pods: the body is a Binding, or a list of
  them, each naming its pod in metadata.name) and `eviction` (pods). `scale`
  is REST-only.
- delete without `name` deletes the collection the selectors match.
- Answers larger than the connection's max payload come in several messages
  on the reply subject: the first carries `Eventplane-Chunks: N` and every
  header, the other N-1 follow in order; the body is their concatenation.
  (Never `Status: 503`: nats.py reads that as "no responders".)
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Any

from nats.aio.msg import Msg

from eventplane.auth.authenticate import Authenticator
from eventplane.auth.identity import User
from eventplane.auth.tokens import TokenFile
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from . import audit, codec, discovery, history, integrity, subresources
from .natsrequest import (JSON, MSGPACK, caller_of, decode_request, delete_options, encode, media_type,
                          namespace_of, number, query_of, read_at, required_body, required_name, selectors,
                          subresource, write_options)

log = logging.getLogger("eventplane.natsapi")

PREFIX = "ep.api"
QUEUE = "eventplane-api"
CHUNKS = "Eventplane-Chunks"
CHUNK_HEADROOM = 4096  # room for headers and protocol overhead within max_payload
PATCH_TYPES = {"json": codec.JSON_PATCH, "merge": codec.MERGE_PATCH, "strategic": codec.STRATEGIC_PATCH,
               "apply": codec.APPLY_PATCH}
DEFAULT_APPLY_MANAGER = "epctl"
STOP_GRACE = 5.0  # seconds in-flight requests get to finish when the API stops


class NatsApi:
    """Serves `PREFIX.>` for one ApiServer: `await NatsApi(server).start()` once the server has
    started, `await stop()` before it stops (it needs the server's NATS connection)."""

    def __init__(self, server: Any, prefix: str = PREFIX, *, max_in_flight: int = 256) -> None:
        self.server = server
        self.prefix = prefix
        self.instance = uuid.uuid4().hex[:12]  # addresses this server's watches (natswatch.py)
        self._authenticator: Authenticator | None = None
        self._subs: list[Any] = []
        self._in_flight: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._verbs = {"get": self._get, "list": self._list, "create": self._create, "apply": self._apply,
                       "update": self._update, "patch": self._patch, "delete": self._delete,
                       "watch": self._watch, "discovery": self._discovery,
                       "audit": lambda req, caller, duplicates, media: self.server.auditor.serve_nats(req),
                       "history": self._object_query(history.history_of),
                       "diff": self._object_query(history.diff_of), "why": self._object_query(history.why_of),
                       "positions": self._log_query(lambda store, q: history.position_of(store.pool, q)),
                       "verify": self._log_query(integrity.verification),
                       "replay": self._log_query(integrity.replay_of)}
        from .natswatch import NatsWatches

        self.watches = NatsWatches(self)

    @property
    def nc(self):
        return self.server.nc

    async def start(self) -> None:
        if self.server.nc is None or self.server.registry is None:
            raise RuntimeError("NatsApi.start() needs a started ApiServer")
        self._authenticator = getattr(self.server, "authenticator", None) or Authenticator(
            TokenFile.load(self.server.config.data_dir / "tokens.csv"), self.server.pki.ca_cert)
        self._subs.append(await self.nc.subscribe(f"{self.prefix}.>", queue=QUEUE, cb=self._on_request))
        await self.watches.start()
        await self.nc.flush()
        log.info("NATS API serving %s.> (queue %s)", self.prefix, QUEUE)

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be gone; nothing to undo then
                pass
        self._subs.clear()
        await self.watches.stop()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=STOP_GRACE)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> NatsApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())

    # --- dispatch -------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            return  # a publish, not a request: watch stops (natswatch.py) and strays
        # Waiting here holds back nats.py's delivery to this subscription: back-pressure
        # instead of an unbounded pile of tasks.
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg), name=f"natsapi {msg.subject}")
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _serve(self, msg: Msg) -> None:
        headers = msg.headers or {}
        media = MSGPACK if media_type(headers) == MSGPACK else JSON
        warnings: list[str] = []
        received, user, request = audit.now(), None, None
        try:
            user = self.authenticate(headers)
            verb = msg.subject[len(self.prefix) + 1:]
            handler = self._verbs.get(verb)
            if handler is None:
                raise errors.NotFoundError(f'unknown operation "{verb}": use one of {", ".join(self._verbs)}')
            request, duplicates = decode_request(msg.data, media)
            value, code, warnings = await handler(request, caller_of(user, headers), duplicates, media)
        except errors.EventplaneError as exc:
            value, code = exc.to_status(), exc.code
        except Exception:
            log.exception("NATS request on %s failed", msg.subject)
            exc = errors.EventplaneError("an internal error occurred; see the server log")
            value, code = exc.to_status(), exc.code
        try:
            await self.publish(msg.reply, value, media, {"Status": str(code)}, warnings=warnings)
        except Exception:
            log.exception("could not answer the NATS request on %s", msg.subject)
        if getattr(self.server, "auditor", None):
            self.server.auditor.record_nats(self, subject=msg.subject, request=request, user=user, headers=headers,
                                            code=code, value=value, received=received)

    def authenticate(self, headers: dict[str, str]) -> User:
        user = self._authenticator.authenticate(authorization_header=headers.get("Authorization"), peer_cert=None)
        if user is None:  # no anonymous access over NATS: there are no public subjects
            raise errors.UnauthorizedError("Unauthorized")
        return user

    async def publish(self, subject: str, value: Any, media: str, headers: dict[str, str], *,
                      warnings: list[str] = ()) -> None:
        """Publish one answer, in several messages when it exceeds the connection's max payload."""
        data = encode(value, media)
        headers = {**headers, "Content-Type": media}
        if warnings:
            headers["Warning"] = ", ".join('299 - "%s"' % w.replace('"', '\\"') for w in warnings)
        size = max(self.nc.max_payload - CHUNK_HEADROOM, 1024)
        if len(data) <= size:
            await self.nc.publish(subject, data, headers=headers)
            return
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        await self.nc.publish(subject, chunks[0], headers={**headers, CHUNKS: str(len(chunks))})
        for chunk in chunks[1:]:
            await self.nc.publish(subject, chunk)

    # --- resolving what a request names ---------------------------------------------------------

    def resolve(self, req: dict[str, Any], body: Any = None) -> ResourceInfo:
        catalog = self.server.catalog
        meta = body if isinstance(body, dict) else {}
        api_version = req.get("apiVersion") or meta.get("apiVersion") or ""
        resource = req.get("resource") or ""
        kind = req.get("kind") or ("" if resource else meta.get("kind") or "")
        if resource and api_version:
            group, _, version = api_version.rpartition("/")
            info = catalog.get(group, version, resource)
        elif resource:
            info = next(iter(catalog.resolve(resource)), None)
        elif kind and api_version:
            info = catalog.by_api_version(api_version, kind)
            if info is None:
                raise errors.NotFoundError(f'no matches for kind "{kind}" in version "{api_version}"',
                                           kind=kind)
        elif kind:
            info = next(iter(catalog.resolve(kind)), None)
        else:
            raise errors.BadRequestError('the request names no resource: give "resource", or "apiVersion" '
                                         'and "kind"')
        if info is None:
            raise errors.NotFoundError(f'the server doesn\'t have a resource type "{resource or kind}"')
        return info

    # --- operations -----------------------------------------------------------------------------

    async def _get(self, req, caller, duplicates, media):
        info = self.resolve(req)
        subresource(req, info, ("status",))
        name = required_name(req)
        obj = await self.server.registry.get(info, namespace_of(info, req), name, at=await self._read_at(req))
        return self._maybe_table(req, info, obj), 200, []

    async def _list(self, req, caller, duplicates, media):
        info = self.resolve(req)
        label, fields = selectors(req)
        limit = number(req.get("limit"), "limit")
        at = await self._read_at(req, list_=True, limit=limit)
        listed = await self.server.registry.list(info, namespace_of(info, req, collection=True),
                                                 label_selector=label, field_selector=fields, limit=limit,
                                                 continue_token=req.get("continue") or "", at=at)
        return self._maybe_table(req, info, listed), 200, []

    async def _create(self, req, caller, duplicates, media):
        docs = req.get("body")
        if isinstance(docs, list):
            return await self._each(req, caller, docs, self._create_one)
        return await self._create_one(req, required_body(req), caller, write_options(req, duplicates))

    async def _each(self, req, caller, docs, write_one):
        """A list body: each item written concurrently (so they share the group commit's transactions),
        each with its own causation, each succeeding or failing alone; answered as a List in order."""
        opts = write_options(req, [])  # duplicate fields are found in single JSON bodies only
        if caller.idempotency_key is not None:
            raise errors.BadRequestError("an Idempotency-Key names one write; a list of objects cannot carry one")
        causations = req.get("causations")
        if causations is None:
            causations = [caller.causation] * len(docs)
        elif not (isinstance(causations, list) and len(causations) == len(docs)
                  and all(c is None or (isinstance(c, int) and c >= 0) for c in causations)):
            raise errors.BadRequestError('"causations" must be a list of positions (or nulls), one per object')
        per_item = {k: v for k, v in req.items() if k != "name"}  # each item names itself

        async def one(doc, causation):
            try:
                obj, _, warnings = await write_one(per_item, doc, dataclasses.replace(caller, causation=causation),
                                                   opts)
                return obj, warnings
            except errors.EventplaneError as exc:
                return exc.to_status(), []
        done = await asyncio.gather(*(one(doc, c) for doc, c in zip(docs, causations)))
        return ({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [obj for obj, _ in done]}, 200,
                [w for _, ws in done for w in ws])

    async def _create_one(self, req, body, caller, opts):
        if not isinstance(body, dict):
            raise errors.BadRequestError("every object to create must be an object")
        # A subresource's body is another kind (a Binding, an Eviction): the request names the resource.
        info = self.resolve(req, None if req.get("subresource") else body)
        namespace = namespace_of(info, req, body)
        sub = subresource(req, info, ("binding", "eviction"))
        if sub:
            name = req.get("name") or (body.get("metadata") or {}).get("name")
            if not name:
                raise errors.BadRequestError(f"{sub}: the pod is named by \"name\" or the body's metadata.name")
            if sub == "binding":
                await subresources.bind(self.server.registry, info, namespace, name, body, caller, opts)
            else:
                from .eviction import evict

                await evict(self.server.registry, self.server.catalog, info, namespace, name, body, caller, opts)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201, []
        result = await self.server.registry.create(info, namespace, body, caller, opts)
        return result.object, 201, result.warnings

    async def _update(self, req, caller, duplicates, media):
        docs = req.get("body")
        if isinstance(docs, list):
            return await self._each(req, caller, docs, self._update_one)
        return await self._update_one(req, required_body(req), caller, write_options(req, duplicates))

    async def _update_one(self, req, body, caller, opts):
        if not isinstance(body, dict):
            raise errors.BadRequestError("every object to update must be an object")
        info = self.resolve(req, body)
        name = req.get("name") or (body.get("metadata") or {}).get("name") or required_name(req)
        sub = subresource(req, info, ("status", "finalize"))
        result = await self.server.registry.update(info, namespace_of(info, req, body), name, body, caller, opts,
                                                   **({"subresource": sub} if sub else {}))
        return result.object, 201 if result.created else 200, result.warnings

    async def _patch(self, req, caller, duplicates, media):
        info = self.resolve(req)
        name = required_name(req)
        patch = req.get("body")
        if patch is None:
            raise errors.BadRequestError("the request has no body: the patch is missing")
        patch_type = req.get("patchType") or (codec.JSON_PATCH if isinstance(patch, list) else codec.MERGE_PATCH)
        patch_type = PATCH_TYPES.get(patch_type, patch_type)
        opts = write_options(req, duplicates)
        if patch_type == codec.APPLY_PATCH and not opts.field_manager:
            opts.field_manager = DEFAULT_APPLY_MANAGER
        sub = subresource(req, info, ("status",))
        result = await self.server.registry.patch(info, namespace_of(info, req), name, patch_type, patch, caller,
                                                  opts, **({"subresource": sub} if sub else {}))
        return result.object, 201 if result.created else 200, result.warnings

    async def _apply(self, req, caller, duplicates, media):
        docs = req.get("body")
        if isinstance(docs, list):
            items: list[dict[str, Any]] = []
            warnings: list[str] = []
            for doc in docs:
                try:
                    obj, _, w = await self._apply_one(req, doc, caller, [])
                    items.append(obj)
                    warnings.extend(w)
                except errors.EventplaneError as exc:
                    items.append(exc.to_status())
            return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}, 200, warnings
        return await self._apply_one(req, required_body(req), caller, duplicates)

    async def _apply_one(self, req, doc, caller, duplicates):
        if not isinstance(doc, dict):
            raise errors.BadRequestError("every document to apply must be an object")
        info = self.resolve({k: v for k, v in req.items() if k not in ("resource", "kind", "apiVersion")}, doc)
        name = (doc.get("metadata") or {}).get("name") or req.get("name")
        if not name:
            raise errors.BadRequestError(f"{info.kind}: metadata.name is required to apply an object",
                                         kind=info.resource, group=info.group)
        opts = write_options(req, duplicates)
        opts.field_manager = opts.field_manager or DEFAULT_APPLY_MANAGER
        result = await self.server.registry.patch(info, namespace_of(info, req, doc), name, codec.APPLY_PATCH,
                                                  doc, caller, opts)
        return result.object, 201 if result.created else 200, result.warnings

    async def _delete(self, req, caller, duplicates, media):
        info = self.resolve(req)
        options = delete_options(req)
        opts = write_options(req, duplicates)
        registry = self.server.registry
        if req.get("name"):
            return await registry.delete(info, namespace_of(info, req), req["name"], options, caller, opts), 200, []
        label, fields = selectors(req)
        namespace = namespace_of(info, req, collection=True)
        listed = await registry.list(info, namespace, label_selector=label, field_selector=fields)
        deleted = []
        for item in listed["items"]:
            try:
                deleted.append(await registry.delete(info, item["metadata"].get("namespace", ""),
                                                     item["metadata"]["name"], options, caller, opts))
            except errors.NotFoundError:
                continue  # gone meanwhile: what the caller wanted
        return {**listed, "items": deleted}, 200, []

    async def _read_at(self, req: dict[str, Any], *, list_: bool = False, limit: int = 0) -> int | None:
        as_of = req.get("asOf")
        if as_of is None or as_of == "":
            return read_at(req, list_=list_, limit=limit)
        return await history.read_position(self.server.registry.store.pool, str(as_of),
                                           resource_version=str(req.get("resourceVersion") or ""),
                                           match=req.get("resourceVersionMatch") or "")

    def _object_query(self, query):
        """A subject about one object's past (history, diff, why): the query history.py serves on REST."""
        async def serve(req, caller, duplicates, media):
            info = self.resolve(req)
            doc = await query(self.server.registry.store.pool, info, namespace_of(info, req), required_name(req),
                              query_of(req))
            return doc, 200, []
        return serve

    def _log_query(self, query):
        """A subject about the whole log (positions, verify, replay): the query REST serves."""
        async def serve(req, caller, duplicates, media):
            return await query(self.server.registry.store, query_of(req)), 200, []
        return serve

    async def _watch(self, req, caller, duplicates, media):
        return await self.watches.open(req, media), 200, []

    async def _discovery(self, req, caller, duplicates, media):
        catalog = self.server.catalog
        core = discovery.aggregated(catalog, core=True)
        groups = discovery.aggregated(catalog, core=False)
        return {**core, "items": core["items"] + groups["items"]}, 200, []

    def _maybe_table(self, req: dict[str, Any], info: ResourceInfo, value: dict[str, Any]) -> dict[str, Any]:
        if req.get("as") != "Table":
            return value
        from datetime import datetime, timezone

        from eventplane.objects.tables import table

        is_list = "items" in value and value.get("kind", "").endswith("List")
        out = table(info.resource, info.group, value["items"] if is_list else [value], wide=True,
                    now=datetime.now(timezone.utc), include_object=req.get("includeObject") or "Metadata")
        meta = value.get("metadata") or {}
        out.setdefault("metadata", {})
        out["metadata"].update({k: v for k, v in meta.items() if k in ("resourceVersion", "continue")})
        return out
