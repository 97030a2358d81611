"""The async client every component and epctl use: the API's operations by resource
name, over REST or NATS, with the same methods and errors on both.

    async with Client.from_kubeconfig() as c:          # or Client.via_nats(url, token)
        dep = await c.get("deploy", "web", namespace="default")
        await c.apply(manifests)                       # server-side apply, field manager "epctl"
        async for type_, obj in c.watch("pods", namespace="default"):
            ...

Names resolve through the server's discovery (cached; fetched again once
when a name is unknown, so new CRDs are found). Reads — and writes that carry
an idempotency key — are retried on connection failures with backoff; other
writes are not, since their outcome is unknown. Watches resume by themselves
from the last resourceVersion seen and raise GoneError when the server no
longer has it (the caller re-lists). Errors are eventplane.objects.errors
classes rebuilt from the server's Status.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from .kubeconfig import ClusterAccess, load
from .operation import PATCH_TYPES, Op, Reply, Transport, Write
from .resources import Resources
from .status import UnreachableError, error_from_status, is_failure
from .watch import Watch

log = logging.getLogger("eventplane.client")

DEFAULT_USER_AGENT = "eventplane-client/0.1"
RETRY_ATTEMPTS = 4
RETRY_BASE_DELAY = 0.1  # seconds; doubled on every attempt, with jitter
RETRIED_STATUS = (429, 503, 504)

ResourceArg = str | ResourceInfo


class Client:
    def __init__(self, transport: Transport, *, namespace: str = "default", attempts: int = RETRY_ATTEMPTS,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.namespace = namespace  # for namespaced resources when a call names none
        self.attempts = max(1, attempts)
        self.on_warning = on_warning or (lambda w: log.warning("server warning: %s", w))
        self._resources: Resources | None = None
        self._discovering: asyncio.Lock | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, *, timeout: float = 30.0,
                        user_agent: str = DEFAULT_USER_AGENT, nats_url: str | None = None, nats_prefix: str = "ep.api",
                        **kw: Any) -> Client:
        """REST to the server of the kubeconfig's context ($KUBECONFIG or ~/.kube/config). With `nats_url`
        and a bearer token in the kubeconfig, requests go over NATS and watches over REST (hybrid.py)."""
        return cls.from_access(load(path, context), timeout=timeout, user_agent=user_agent, nats_url=nats_url,
                               nats_prefix=nats_prefix, **kw)

    @classmethod
    def from_access(cls, access: ClusterAccess, *, timeout: float = 30.0, user_agent: str = DEFAULT_USER_AGENT,
                    nats_url: str | None = None, nats_prefix: str = "ep.api", **kw: Any) -> Client:
        from .rest import RestTransport

        kw.setdefault("namespace", access.namespace)
        rest = RestTransport(access, timeout=timeout, user_agent=user_agent)
        if nats_url and access.token:
            from .hybrid import HybridTransport
            from .nats import NatsTransport

            nats = NatsTransport(nats_url, access.token, prefix=nats_prefix, timeout=timeout, user_agent=user_agent)
            return cls(HybridTransport(rest, nats), **kw)
        return cls(rest, **kw)

    @classmethod
    def via_nats(cls, nats_url: str | None, token: str | None, *, nc: Any = None, prefix: str = "ep.api",
                 timeout: float = 30.0, user_agent: str = DEFAULT_USER_AGENT, **kw: Any) -> Client:
        """Requests on `PREFIX.<verb>` over NATS; pass `nc` to share a connection the caller holds."""
        from .nats import NatsTransport

        return cls(NatsTransport(nats_url, token, nc=nc, prefix=prefix, timeout=timeout, user_agent=user_agent),
                   **kw)

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    # --- names ----------------------------------------------------------------------------------

    async def resources(self, *, refresh: bool = False) -> Resources:
        if self._discovering is None:
            self._discovering = asyncio.Lock()
        async with self._discovering:
            if self._resources is None or refresh:
                items = await self._retrying(self.transport.discover, idempotent=True)
                self._resources = Resources.from_discovery(items)
        return self._resources

    async def resolve(self, resource: ResourceArg) -> ResourceInfo:
        """What `deploy`, `deployments.apps` or `Deployment` names on this server."""
        if isinstance(resource, ResourceInfo):
            return resource
        found = (await self.resources()).find(resource)
        if found is None:
            found = (await self.resources(refresh=True)).find(resource)  # a CRD added since
        if found is None:
            raise errors.NotFoundError(f'the server doesn\'t have a resource type "{resource}"')
        return found

    async def resolve_object(self, obj: Any) -> ResourceInfo:
        try:
            return (await self.resources()).for_object(obj)
        except errors.NotFoundError:
            return (await self.resources(refresh=True)).for_object(obj)

    def _namespace(self, info: ResourceInfo, namespace: str | None, obj: Any = None) -> str:
        if not info.namespaced:
            return ""
        if namespace:
            return namespace
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        return (meta or {}).get("namespace") or self.namespace

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, resource: ResourceArg, name: str, *, namespace: str | None = None,
                  resource_version: str | None = None, table: bool = False, as_of: str | None = None
                  ) -> dict[str, Any]:
        """The object now, or as it was at `as_of` (a resourceVersion, an RFC 3339 time, or -10m)."""
        info = await self.resolve(resource)
        return await self._call(Op("get", info, self._namespace(info, namespace), name, table=table,
                                   resource_version=resource_version,
                                   resource_version_match="Exact" if resource_version else None, as_of=as_of))

    async def get_at(self, resource: ResourceArg, name: str, at: str | int, *, namespace: str | None = None,
                     table: bool = False) -> dict[str, Any]:
        return await self.get(resource, name, namespace=namespace, table=table, as_of=str(at))

    async def list(self, resource: ResourceArg, *, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None, all_namespaces: bool = False, limit: int | None = None,
                   continue_token: str | None = None, resource_version: str | None = None,
                   table: bool = False, as_of: str | None = None) -> dict[str, Any]:
        info = await self.resolve(resource)
        ns = "" if all_namespaces else self._namespace(info, namespace)
        return await self._call(Op("list", info, ns, label_selector=label_selector, field_selector=field_selector,
                                   limit=limit, continue_token=continue_token, resource_version=resource_version,
                                   table=table, as_of=as_of))

    # --- history (history.eventplane.io/v1, docs/history.md) -----------------------------------

    async def history(self, resource: ResourceArg, name: str, *, namespace: str | None = None,
                      uid: str | None = None) -> dict[str, Any]:
        """ObjectHistory: one item per event of every incarnation of the name (or of `uid`), oldest first."""
        return await self._history("history", resource, name, namespace, {"uid": uid})

    async def diff(self, resource: ResourceArg, name: str, *, namespace: str | None = None,
                   from_: str | int | None = None, to: str | int | None = None,
                   field: str | None = None) -> dict[str, Any]:
        """ObjectDiff between two points (resourceVersions, times or -10m): a unified YAML diff, or with
        `field` the values that path took in between."""
        return await self._history("diff", resource, name, namespace,
                                   {"from": from_, "to": to, "field": field})

    async def why(self, resource: ResourceArg, name: str, *, namespace: str | None = None,
                  resource_version: str | int | None = None) -> dict[str, Any]:
        """CausationChain: the object's latest event (or the one at resource_version) and its causes,
        first cause first."""
        return await self._history("why", resource, name, namespace, {"resourceVersion": resource_version})

    async def _history(self, kind: str, resource: ResourceArg, name: str, namespace: str | None,
                       params: dict[str, Any]) -> dict[str, Any]:
        info = await self.resolve(resource)
        return await self.query(kind, params, target=Op("get", info, self._namespace(info, namespace), name))

    async def query(self, what: str, params: dict[str, Any], *, target: Op | None = None) -> dict[str, Any]:
        """A document of history.eventplane.io/v1 over either transport: history, diff, why (about
        `target`'s object), positions, verify, replay. Parameters left None or "" are not sent."""
        query = {k: str(v) for k, v in params.items() if v is not None and v != ""}
        reply = await self._retrying(lambda: self.transport.query(what, query, target), idempotent=True)
        return reply.value

    def watch(self, resource: ResourceArg, *, namespace: str | None = None, name: str | None = None,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, all_namespaces: bool = False, bookmarks: bool = False,
              timeout: float | None = None) -> Watch:
        """(type, object) pairs: ADDED for what exists (without resource_version), then every change.
        Iterate it with `async for`, or `async with client.watch(...) as w` to end it promptly."""

        async def make_op(rv: str | None) -> Op:
            info = await self.resolve(resource)
            ns = "" if all_namespaces else self._namespace(info, namespace)
            return Op("watch", info, ns, name or "", label_selector=label_selector, field_selector=field_selector,
                      resource_version=rv, resource_version_match="NotOlderThan" if not rv else None,
                      send_initial_events=not rv)

        return Watch(self, make_op, resource_version=resource_version, bookmarks=bookmarks, timeout=timeout)

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, obj: dict[str, Any], *, namespace: str | None = None, dry_run: bool = False,
                     field_manager: str | None = None, field_validation: str | None = None,
                     causation: int | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        info = await self.resolve_object(obj)
        return await self._call(Op("create", info, self._namespace(info, namespace, obj), body=obj,
                                   write=Write(dry_run, field_manager, False, field_validation, causation,
                                               idempotency_key)))

    async def create_subresource(self, resource: ResourceArg, name: str, subresource: str, body: dict[str, Any], *,
                                 namespace: str | None = None, dry_run: bool = False,
                                 causation: int | None = None, idempotency_key: str | None = None) -> Any:
        """POST to an object's subresource: `pods/binding` (a Binding), `pods/eviction` (an Eviction)."""
        info = await self.resolve(resource)
        return await self._call(Op("create", info, self._namespace(info, namespace), name, subresource=subresource,
                                   body=body, write=Write(dry_run, None, False, None, causation, idempotency_key)))

    async def create_many(self, resource: ResourceArg, objs: list[dict[str, Any]], *, namespace: str | None = None,
                          subresource: str = "", causations: list[int | None] | None = None) -> list[Any]:
        """Create several objects of one resource — or POST several bodies to its subresource, e.g.
        Bindings to `pods/binding`, each naming its pod in metadata.name — each with its own causation.
        Over NATS this is one request whose writes share the server's group commit; over REST, concurrent
        requests. Returns, in order, each created object (a subresource's Status) or the error (not raised,
        as asyncio.gather(return_exceptions=True) does)."""
        return await self._many("create", resource, objs, namespace, subresource, causations)

    async def update_many(self, resource: ResourceArg, objs: list[dict[str, Any]], *, namespace: str | None = None,
                          subresource: str = "", causations: list[int | None] | None = None) -> list[Any]:
        """As create_many, for updates (PUT): e.g. a node's status writes of many pods at once."""
        return await self._many("update", resource, objs, namespace, subresource, causations)

    async def _many(self, verb: str, resource: ResourceArg, objs: list[dict[str, Any]], namespace: str | None,
                    subresource: str, causations: list[int | None] | None) -> list[Any]:
        if not objs:
            return []
        info = await self.resolve(resource)
        causes = list(causations) if causations is not None else [None] * len(objs)
        if len(causes) != len(objs):
            raise ValueError(f"{verb}_many: one causation per object")
        write_many = getattr(self.transport, "write_many", None)
        if write_many is not None:
            # Without a namespace given, each object's own metadata.namespace (else "default") holds.
            op = Op(verb, info, namespace or "", subresource=subresource)
            try:
                reply = await self._retrying(lambda: write_many(op, objs, causes), idempotent=False)
            except errors.RequestEntityTooLargeError:
                pass  # too big for one message: one request per object below
            else:
                self._warn(reply)
                return [error_from_status(item) if is_failure(item) else item for item in reply.value["items"]]

        async def one(obj: dict[str, Any], causation: int | None) -> Any:
            ns = namespace or (obj.get("metadata") or {}).get("namespace")
            if verb == "update":
                return await self.update(obj, namespace=ns, causation=causation, subresource=subresource)
            if subresource:
                return await self.create_subresource(info, obj["metadata"]["name"], subresource, obj, namespace=ns,
                                                     causation=causation)
            return await self.create(obj, namespace=ns, causation=causation)
        return list(await asyncio.gather(*(one(o, c) for o, c in zip(objs, causes)), return_exceptions=True))

    async def update(self, obj: dict[str, Any], *, namespace: str | None = None, dry_run: bool = False,
                     field_manager: str | None = None, causation: int | None = None,
                     idempotency_key: str | None = None, subresource: str = "") -> dict[str, Any]:
        """PUT the object; `subresource="status"` writes only its status."""
        info = await self.resolve_object(obj)
        return await self._call(Op("update", info, self._namespace(info, namespace, obj),
                                   (obj.get("metadata") or {}).get("name", ""), subresource=subresource, body=obj,
                                   write=Write(dry_run, field_manager, False, None, causation, idempotency_key)))

    async def apply(self, objs: dict[str, Any] | list[dict[str, Any]], *, field_manager: str = "epctl",
                    force: bool = False, namespace: str | None = None, dry_run: bool = False,
                    causation: int | None = None, idempotency_key: str | None = None) -> Any:
        """Server-side apply. One manifest → the applied object (or an error raised). A list → a list in
        the same order whose entries are applied objects or, for manifests that failed, the error
        (not raised, as asyncio.gather(return_exceptions=True) does)."""
        write = Write(dry_run, field_manager, force, None, causation, idempotency_key)
        if isinstance(objs, dict):
            return await self._apply_one(objs, write, namespace)
        apply_many = getattr(self.transport, "apply_many", None)
        if apply_many is not None and objs and idempotency_key is None:
            try:
                reply = await self._retrying(lambda: apply_many(objs, write, namespace or ""), idempotent=False)
            except errors.RequestEntityTooLargeError:
                pass  # too big for one message: one request per manifest below
            else:
                self._warn(reply)
                return [error_from_status(item) if is_failure(item) else item for item in reply.value["items"]]
        out: list[Any] = []
        for obj in objs:
            try:
                out.append(await self._apply_one(obj, write, namespace))
            except errors.EventplaneError as exc:
                out.append(exc)
        return out

    async def _apply_one(self, obj: dict[str, Any], write: Write, namespace: str | None) -> dict[str, Any]:
        info = await self.resolve_object(obj)
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise errors.BadRequestError(f"{info.kind}: metadata.name is required to apply an object")
        return await self._call(Op("apply", info, self._namespace(info, namespace, obj), name, body=obj,
                                   patch_type=PATCH_TYPES["apply"], write=write))

    async def patch(self, resource: ResourceArg, name: str, patch: Any, *, type: str | None = None,
                    namespace: str | None = None, dry_run: bool = False, field_manager: str | None = None,
                    force: bool = False, causation: int | None = None,
                    idempotency_key: str | None = None, subresource: str = "") -> dict[str, Any]:
        """`type`: json, merge, strategic, apply (or the media type); default json for a list, merge otherwise.
        `subresource="status"` patches only the status."""
        info = await self.resolve(resource)
        kind = type or ("json" if isinstance(patch, list) else "merge")
        return await self._call(Op("patch", info, self._namespace(info, namespace), name, subresource=subresource,
                                   body=patch,
                                   patch_type=PATCH_TYPES.get(kind, kind),
                                   write=Write(dry_run, field_manager, force, None, causation, idempotency_key)))

    async def delete(self, resource: ResourceArg, name: str, *, namespace: str | None = None,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     dry_run: bool = False, causation: int | None = None,
                     idempotency_key: str | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        """The object as deleted (with deletionTimestamp while finalizers or a grace period hold it).
        `preconditions` ({"uid": …} and/or {"resourceVersion": …}): delete only that incarnation/version,
        else ConflictError — as the kubelet deletes a pod by UID."""
        info = await self.resolve(resource)
        return await self._call(Op("delete", info, self._namespace(info, namespace), name,
                                   propagation_policy=propagation_policy, grace_period_seconds=grace_period_seconds,
                                   preconditions=preconditions,
                                   write=Write(dry_run, None, False, None, causation, idempotency_key)))

    # --- plumbing -------------------------------------------------------------------------------

    async def _call(self, op: Op) -> Any:
        reply = await self._retrying(lambda: self.transport.call(op), idempotent=op.idempotent)
        self._warn(reply)
        return reply.value

    def _warn(self, reply: Reply) -> None:
        for w in reply.warnings:
            self.on_warning(w)

    async def _retrying(self, attempt: Callable[[], Any], *, idempotent: bool) -> Any:
        for n in range(self.attempts):
            try:
                return await attempt()
            except UnreachableError as exc:
                if not idempotent or not getattr(exc, "retriable", True) or n + 1 >= self.attempts:
                    raise
                log.debug("retrying after %s", exc)
            except errors.EventplaneError as exc:
                if not idempotent or exc.code not in RETRIED_STATUS or n + 1 >= self.attempts:
                    raise
            await asyncio.sleep(RETRY_BASE_DELAY * 2 ** n * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")
