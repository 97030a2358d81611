"""The API's operations on objects, independent of the transport: get, list, create,
update, patch, delete, delete a collection, and the subresources.

Fed by the REST handlers and the NATS API with a resource, a namespace, a name,
a body and who is asking; every change is one append to the event store, so
the store's optimistic concurrency decides conflicts. Reads come from the
store's current-state projection (consistent: it is updated in the appending
transaction) or, for an exact older resourceVersion, from the log itself.
"""
from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventplane.objects import errors
from eventplane.objects.events import EventType, StreamId, pack, unpack
from eventplane.objects.schema import Catalog, ResourceInfo
from eventplane.store import Append, Context, EventStore

from . import strategy
from .admission import Admission
from .patching import patch_object

MAX_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Caller:
    """Who asks, and why: becomes the event's envelope."""

    user: str
    groups: tuple[str, ...] = ()
    request_id: str = ""
    trace_id: str = ""
    causation: int | None = None
    idempotency_key: str | None = None
    user_agent: str = ""

    def context(self, verb: str) -> Context:
        return Context(actor=self.user, verb=verb, request_id=self.request_id, trace_id=self.trace_id,
                       causation=self.causation, idempotency_key=self.idempotency_key)


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    field_manager: str = ""
    force: bool = False
    duplicates: list[str] = field(default_factory=list)


@dataclass
class Result:
    object: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    created: bool = False


def stream_of(info: ResourceInfo, namespace: str, name: str) -> StreamId:
    return StreamId(info.group, info.resource, namespace if info.namespaced else "", name)


def not_found(info: ResourceInfo, name: str) -> errors.NotFoundError:
    return errors.NotFoundError(f'{info.group_resource} "{name}" not found', name=name, group=info.group,
                                kind=info.resource)


def default_manager(user_agent: str) -> str:
    """Kubernetes' default field manager: the User-Agent up to its first '/'."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


class Registry:
    def __init__(self, store: EventStore, catalog: Callable[[], Catalog]) -> None:
        self.store = store
        self.catalog = catalog  # the current catalog (it changes when CRDs come and go)
        self.rng = random.Random()
        # Namespace name → being terminated: the existence check of every namespaced create, kept
        # current by the watch cache as Kubernetes' admission keeps it with an informer.
        self.namespaces: dict[str, tuple[bool | None, int]] = {}  # name → (terminating, position); None: gone
        # Called after every committed write with (info, object): the API server's own reactions.
        self.after_write: list[Callable[[ResourceInfo, dict[str, Any]], Awaitable[None]]] = []
        # (stream key, resourceVersion) → the object at that version if this server has it at hand
        # (the watch cache's last change of the stream), else None: spares an update the read.
        self.seen: Callable[[str, int], dict[str, Any] | None] = lambda key, position: None
        self.admission = Admission(store)  # admission plugins (Priority): admission.py

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str, name: str, *, at: int | None = None) -> dict[str, Any]:
        stream = stream_of(info, namespace, name)
        obj = await (self.store.object_at(stream, at) if at is not None else self.store.get(stream))
        if obj is None:
            raise not_found(info, name)
        return self._as_version(info, obj)

    async def list(self, info: ResourceInfo, namespace: str, *, label_selector: Any = None,
                   field_selector: Any = None, limit: int = 0, continue_token: str = "",
                   at: int | None = None) -> dict[str, Any]:
        """A list in key order; with `limit`, pages continue at the first page's resourceVersion."""
        after_key = ""
        if continue_token:
            at, after_key = _decode_continue(continue_token)
        items: list[dict[str, Any]] = []
        remaining = limit or None
        head = at
        more = False
        while True:
            batch_size = None if remaining is None else max(remaining * 2, 50)
            if head is None:
                head, rows = await self.store.list_snapshot(group=info.group, resource=info.resource,
                                                            namespace=namespace or None, after_key=after_key,
                                                            limit=batch_size)
            else:
                rows = await self.store.list_at(head, group=info.group, resource=info.resource,
                                                namespace=namespace or None, after_key=after_key, limit=batch_size)
            for key, obj in rows:
                after_key = key
                if label_selector is not None and not label_selector.matches(
                        (obj.get("metadata") or {}).get("labels") or {}):
                    continue
                if field_selector is not None and not field_selector.matches(obj, info.resource, info.group):
                    continue
                items.append(self._as_version(info, obj))
                if remaining is not None and len(items) >= remaining:
                    break
            if remaining is not None and len(items) >= remaining:
                more = len(rows) > 0 and (rows[-1][0] != after_key or len(rows) == batch_size)
                break
            if batch_size is None or len(rows) < batch_size:
                break
        metadata: dict[str, Any] = {"resourceVersion": str(head)}
        if more:
            metadata["continue"] = _encode_continue(head, after_key)
        return {"kind": info.list_kind or info.kind + "List", "apiVersion": info.api_version,
                "metadata": metadata, "items": items}

    def _as_version(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        # Custom resources are stored as written; served versions differ only in apiVersion
        # (conversion strategy None).
        if info.custom:
            obj["apiVersion"] = info.api_version
        else:
            obj.setdefault("apiVersion", info.api_version)
            obj.setdefault("kind", info.kind)
        return obj

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, info: ResourceInfo, namespace: str, body: Any, caller: Caller,
                     opts: WriteOptions, *, managed: bool = False) -> Result:
        obj = strategy.check_type_meta(info, body)
        warnings = strategy.validate_fields(info, obj, opts.field_validation, opts.duplicates)
        await self.admission.admit_create(info, obj)
        obj = strategy.prepare_create(info, obj, namespace=namespace, rng=self.rng)
        strategy.validate_object(info, obj, None)
        await self._check_namespace(info, obj)
        await self._allocate(info, obj)
        if not managed:
            obj = self._manage(info, None, obj, caller, opts, operation="Update")
        if opts.dry_run:
            return Result(obj, warnings, created=True)
        [appended] = await self.store.append(
            Append(stream_of(info, namespace, obj["metadata"]["name"]), EventType.CREATED, obj,
                   uid=obj["metadata"]["uid"]), caller.context("create"))
        obj["metadata"]["resourceVersion"] = str(appended.position)
        await self._written(info, obj)
        return Result(obj, warnings, created=True)

    async def update(self, info: ResourceInfo, namespace: str, name: str, body: Any, caller: Caller,
                     opts: WriteOptions, *, subresource: str = "") -> Result:
        new = strategy.check_type_meta(info, body)
        warnings = strategy.validate_fields(info, new, opts.field_validation, opts.duplicates)
        if new["metadata"].get("name", name) != name:
            raise errors.BadRequestError("the name of the object (%s) does not match the name on the URL (%s)"
                                         % (new["metadata"].get("name"), name))
        new["metadata"]["name"] = name
        stream = stream_of(info, namespace, name)
        expected = new["metadata"].get("resourceVersion")
        # The version the update names, when this server has it at hand: an append that passes its
        # check that this version is still the current one is exactly the write a fresh read would
        # have made. Anything else (a conflict, an error, a no-op, which writes nothing to check) is
        # decided again from a fresh read, so that every answer is the one the store's state gives.
        old = None
        if not opts.dry_run and isinstance(expected, str) and expected.isdigit():
            old = self.seen(stream.key, int(expected))
        if old is not None:
            retry = _json_copy(new)
            try:
                return await self._write(info, old, new, caller, opts, subresource=subresource, warnings=warnings,
                                         expected=int(expected), verb="update", unverified=True)
            except _Unverified:
                new = retry
        old = await self.store.get(stream)
        if old is None:
            raise not_found(info, name)
        return await self._write(info, old, new, caller, opts, subresource=subresource, warnings=warnings,
                                 expected=_parse_rv(expected) if expected else int(old["metadata"]["resourceVersion"]),
                                 verb="update")

    async def patch(self, info: ResourceInfo, namespace: str, name: str, patch_type: str, patch: Any,
                    caller: Caller, opts: WriteOptions, *, subresource: str = "") -> Result:
        """Apply `patch` to the current object, retrying on conflict as Kubernetes' GuaranteedUpdate does
        (unless the patch itself carries a resourceVersion)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            old = await self.store.get(stream_of(info, namespace, name))
            if old is None and patch_type != "application/apply-patch+yaml":
                raise not_found(info, name)
            try:
                new, precondition = patch_object(info, old, patch, patch_type, caller=caller, opts=opts,
                                                 subresource=subresource, now=strategy.now_rfc3339())
                if old is None:
                    new["metadata"].setdefault("name", name)
                    if info.namespaced:
                        new["metadata"].setdefault("namespace", namespace)
                    return await self.create(info, namespace, new, caller, opts, managed=True)
                warnings = strategy.validate_fields(info, new, opts.field_validation, opts.duplicates)
                expected = precondition or int(old["metadata"]["resourceVersion"])
                return await self._write(info, old, new, caller, opts, subresource=subresource, warnings=warnings,
                                         expected=expected, verb="patch", managed=patch_type.endswith("apply-patch+yaml"))
            except errors.ConflictError:
                if precondition_of(patch):
                    raise
        raise errors.ConflictError(f'Operation cannot be fulfilled on {info.group_resource} "{name}": the object '
                                   "has been modified; please apply your changes to the latest version and try again",
                                   name=name, group=info.group, kind=info.resource)

    async def _write(self, info: ResourceInfo, old: dict[str, Any], new: dict[str, Any], caller: Caller,
                     opts: WriteOptions, *, subresource: str, warnings: list[str], expected: int, verb: str,
                     managed: bool = False, unverified: bool = False) -> Result:
        """With `unverified` (`old` did not come from a read of the store), only a committed append
        is an answer: anything else raises _Unverified before anything is written."""
        try:
            outcome = await self._append_update(info, old, new, caller, opts, subresource=subresource,
                                                warnings=warnings, expected=expected, verb=verb, managed=managed,
                                                unverified=unverified)
        except errors.EventplaneError:
            if unverified:
                raise _Unverified() from None
            raise
        if isinstance(outcome, Result):
            return outcome  # nothing written
        result, deleted = outcome
        await self._written(info, result.object, deleted=deleted)
        return result

    async def _append_update(self, info: ResourceInfo, old: dict[str, Any], new: dict[str, Any], caller: Caller,
                             opts: WriteOptions, *, subresource: str, warnings: list[str], expected: int, verb: str,
                             managed: bool, unverified: bool) -> Result | tuple[Result, bool]:
        new = strategy.prepare_update(info, new, old, subresource=subresource)
        await self.admission.admit_update(info, new, old)
        strategy.validate_object(info, new, old)
        if not managed:
            new = self._manage(info, old, new, caller, opts, operation="Update", subresource=subresource)
        if strategy.same_content(new, old):
            if unverified:
                raise _Unverified()
            return Result(old, warnings)
        finalized = bool(new["metadata"].get("deletionTimestamp")) and not new["metadata"].get("finalizers") \
            and not old["metadata"].get("deletionGracePeriodSeconds")   # kube: a pod in its grace period stays
        if finalized and (info.group, info.resource) == ("", "namespaces"):
            finalized = not (new.get("spec") or {}).get("finalizers")  # and its spec.finalizers (namespaces/finalize)
        event_type = EventType.DELETED if finalized else (
            EventType.STATUS_UPDATED if subresource == "status" else EventType.UPDATED)
        if opts.dry_run:
            return Result(new, warnings)
        [appended] = await self.store.append(
            Append(stream_of(info, old["metadata"].get("namespace", ""), old["metadata"]["name"]), event_type, new,
                   uid=old["metadata"]["uid"], expected_version=expected), caller.context(verb))
        new["metadata"]["resourceVersion"] = str(appended.position)
        return Result(new, warnings), event_type == EventType.DELETED

    async def _written(self, info: ResourceInfo, obj: dict[str, Any], *, deleted: bool = False) -> None:
        if (info.group, info.resource) == ("", "namespaces"):
            # This server's own writes count at once; the watch cache brings other servers' writes.
            self.note_namespace(obj, deleted=deleted)
        self.admission.written(info, obj, deleted)
        for hook in self.after_write:
            await hook(info, obj)

    def _manage(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any], caller: Caller,
                opts: WriteOptions, *, operation: str, subresource: str = "") -> dict[str, Any]:
        from eventplane.objects.patch import update_managed_fields

        manager = opts.field_manager or default_manager(caller.user_agent)
        return update_managed_fields(old, new, strategy.schema_node(info), manager=manager, operation=operation,
                                     api_version=info.api_version, now=strategy.now_rfc3339(),
                                     subresource=subresource)

    async def delete(self, info: ResourceInfo, namespace: str, name: str, options: dict[str, Any],
                     caller: Caller, opts: WriteOptions) -> dict[str, Any]:
        stream = stream_of(info, namespace, name)
        for _ in range(MAX_CONFLICT_RETRIES):
            old = await self.store.get(stream)
            if old is None:
                raise not_found(info, name)
            _check_preconditions(info, old, options.get("preconditions") or {})
            obj = copy.deepcopy(old)
            m = obj["metadata"]
            policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "")
            finalizers = list(m.get("finalizers") or [])
            # Orphan and Foreground hold the object with a finalizer, as in Kubernetes: the owner is marked
            # deleted first, so no controller adopts what is being orphaned. Foreground is finished by the
            # garbage collector (reconcilers/controllers/garbagecollector.py); Orphan by this server at once
            # below (the collector finishes it too should this server stop half-way).
            orphaning = policy == "Orphan" and "orphan" not in finalizers and not m.get("deletionTimestamp")
            if orphaning:
                finalizers = [f for f in finalizers if f != "foregroundDeletion"] + ["orphan"]
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            graceful = _grace_period(info, obj, options)
            if info.resource == "namespaces" and not info.group:
                finalizers_pending = bool((obj.get("spec") or {}).get("finalizers"))
            else:
                finalizers_pending = False
            if finalizers or graceful or finalizers_pending:
                if m.get("deletionTimestamp") and not graceful:
                    return old  # already being deleted
                m.setdefault("deletionTimestamp", strategy.now_rfc3339())
                m["deletionGracePeriodSeconds"] = graceful or 0
                if finalizers:
                    m["finalizers"] = finalizers
                if finalizers_pending:
                    obj.setdefault("status", {})["phase"] = "Terminating"
                event_type = EventType.DELETING
            else:
                event_type = EventType.DELETED
            if opts.dry_run:
                return obj
            try:
                [appended] = await self.store.append(
                    Append(stream, event_type, obj, uid=m["uid"], expected_version=int(old["metadata"]["resourceVersion"])),
                    caller.context("delete"))
            except errors.ConflictError:
                continue
            m["resourceVersion"] = str(appended.position)
            await self._written(info, obj, deleted=event_type == EventType.DELETED)
            if orphaning:
                await self._orphan_dependents(info, obj, caller)
                return await self._remove_finalizer(info, stream, "orphan", caller) or obj
            return obj
        raise errors.ConflictError(f'Operation cannot be fulfilled on {info.group_resource} "{name}": the object '
                                   "has been modified; please apply your changes to the latest version and try again")

    async def _orphan_dependents(self, info: ResourceInfo, owner: dict[str, Any], caller: Caller) -> None:
        """Orphan propagation: the owner's dependents lose their reference to it."""
        uid = owner["metadata"]["uid"]
        namespace = owner["metadata"].get("namespace", "")
        for dep_info in self.catalog():
            if not dep_info.namespaced and namespace:
                continue
            _, rows = await self.store.list_snapshot(group=dep_info.group, resource=dep_info.resource,
                                                     namespace=namespace or None)
            for _, dep in rows:
                for _ in range(MAX_CONFLICT_RETRIES):
                    refs = (dep.get("metadata") or {}).get("ownerReferences") or []
                    kept = [r for r in refs if r.get("uid") != uid]
                    if len(kept) == len(refs):
                        break
                    new = copy.deepcopy(dep)
                    if kept:
                        new["metadata"]["ownerReferences"] = kept
                    else:
                        new["metadata"].pop("ownerReferences", None)
                    dep_stream = stream_of(dep_info, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
                    try:
                        await self.store.append(Append(dep_stream, EventType.UPDATED, new, uid=dep["metadata"]["uid"],
                                                       expected_version=int(dep["metadata"]["resourceVersion"])),
                                                caller.context("orphan"))
                        break
                    except errors.ConflictError:  # changed meanwhile (a controller's status write): again
                        dep = await self.store.get(dep_stream)
                        if dep is None or dep["metadata"].get("uid") != new["metadata"]["uid"]:
                            break

    async def _remove_finalizer(self, info: ResourceInfo, stream: StreamId, finalizer: str,
                                caller: Caller) -> dict[str, Any] | None:
        """Drop a finalizer of an object being deleted; the last one deletes it."""
        for _ in range(MAX_CONFLICT_RETRIES):
            old = await self.store.get(stream)
            if old is None or finalizer not in (old["metadata"].get("finalizers") or []):
                return old
            obj = copy.deepcopy(old)
            m = obj["metadata"]
            m["finalizers"] = [f for f in m["finalizers"] if f != finalizer]
            if not m["finalizers"]:
                del m["finalizers"]
            held = m.get("finalizers") or m.get("deletionGracePeriodSeconds") or (
                (info.group, info.resource) == ("", "namespaces") and (obj.get("spec") or {}).get("finalizers"))
            event_type = EventType.UPDATED if held else EventType.DELETED
            try:
                [appended] = await self.store.append(
                    Append(stream, event_type, obj, uid=m["uid"], expected_version=int(m["resourceVersion"])),
                    caller.context("delete"))
            except errors.ConflictError:
                continue
            m["resourceVersion"] = str(appended.position)
            await self._written(info, obj, deleted=event_type == EventType.DELETED)
            return obj
        return None  # left to the garbage collector

    # --- create-time checks and allocations -----------------------------------------------------

    async def _check_namespace(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if not info.namespaced:
            return
        ns = obj["metadata"]["namespace"]
        terminating = (self.namespaces.get(ns) or (None, 0))[0]
        if terminating is None:  # not seen yet, or gone: ask the store, and remember
            found = await self.store.get(StreamId("", "namespaces", "", ns))
            if found is None:
                raise errors.NotFoundError(f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            terminating = self.note_namespace(found)
        if terminating:
            raise errors.ForbiddenError(
                f"{info.resource} \"{obj['metadata'].get('name', '')}\" is forbidden: unable to create new content "
                f"in namespace {ns} because it is being terminated", name=obj["metadata"].get("name", ""),
                kind=info.resource)

    def note_namespace(self, namespace: dict[str, Any], *, deleted: bool = False) -> bool:
        """Keep the namespace cache current (fed by this server's writes and the watch cache, which
        may deliver an older change after a newer write of ours: the higher resourceVersion wins);
        returns whether the namespace is being terminated."""
        meta = namespace["metadata"]
        name, position = meta["name"], int(meta.get("resourceVersion") or 0)
        known = self.namespaces.get(name)
        if known is not None and known[1] > position:
            return bool(known[0])
        terminating = None if deleted else bool(meta.get("deletionTimestamp"))
        self.namespaces[name] = (terminating, position)
        return bool(terminating)

    async def _allocate(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if (info.group, info.resource) == ("", "services"):
            from .allocation import allocate_cluster_ip
            await allocate_cluster_ip(self.store, obj, self.rng)


class _Unverified(Exception):
    """An update from an object this server had at hand did not commit: decide it from a fresh read."""


def _json_copy(value: Any) -> Any:
    """A deep copy of a decoded body (msgpack's round trip is several times faster than deepcopy)."""
    try:
        return unpack(pack(value))
    except Exception:  # a value msgpack cannot carry as it is (an integer beyond 64 bits)
        return copy.deepcopy(value)


def precondition_of(patch: Any) -> int | None:
    if isinstance(patch, dict):
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        return _parse_rv(rv) if rv else None
    return None


def _parse_rv(value: Any) -> int:
    try:
        rv = int(str(value))
    except ValueError:
        raise errors.BadRequestError(f'invalid resource version "{value}": resourceVersion must be an '
                                     "integer") from None
    if rv < 0:
        raise errors.BadRequestError(f'invalid resource version "{value}"')
    return rv


def _check_preconditions(info: ResourceInfo, obj: dict[str, Any], pre: dict[str, Any]) -> None:
    m = obj["metadata"]
    if pre.get("uid") and pre["uid"] != m.get("uid"):
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {info.group_resource} "{m["name"]}": Precondition failed: '
            f"UID in precondition: {pre['uid']}, UID in object meta: {m.get('uid')}",
            name=m["name"], group=info.group, kind=info.resource)
    if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(m.get("resourceVersion")):
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {info.group_resource} "{m["name"]}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            name=m["name"], group=info.group, kind=info.resource)


def _grace_period(info: ResourceInfo, obj: dict[str, Any], options: dict[str, Any]) -> int:
    """Pods bound to a node are deleted gracefully: their agent stops the containers first."""
    if (info.group, info.resource) != ("", "pods"):
        return 0
    if not (obj.get("spec") or {}).get("nodeName"):
        return 0
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return max(int(grace), 0)


def _encode_continue(position: int, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": position, "start": key}).encode()).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.BadRequestError("continue key is not valid: illegal base64 data or json") from None
