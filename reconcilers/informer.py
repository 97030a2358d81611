"""Informers: a local, indexed cache of one resource kept current from the event stream.

Fed by the API through eventplane.client: a list at a resourceVersion, then a
watch from that resourceVersion — which the server serves from the JetStream
stream, consuming from position RV+1 (DESIGN invariants 3 and 5). A watch that
breaks resumes by itself from the last version handled; a version the server
no longer keeps (410 Gone) makes the informer list again and turn the
difference into add/update/delete notifications, as client-go's Reflector does.

Consumed by controllers: their handlers (on_add / on_update / on_delete)
enqueue keys on a WorkQueue, and their reconcile reads the cache (`store`),
looking objects up by key or through an index (namespace, owner uid, node,
label). Handlers run in the informer's task, in the order of the events, after
the cache has applied the event: a handler sees the cache as of that event.

Causation (DESIGN invariant 10): a write made because of an event carries that
event's position. `causation_of(obj)` is the position of the event that left
an object as the informer saw it; `Informer.position_of(key)` the position of
the last event the informer applied for a key (deletions included), which is
what a level-triggered reconcile of that key passes as `causation=`.

`SharedInformerFactory` gives every controller of a process the same informer
(and so the same cache and watch) per resource.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eventplane.client import Client, UnreachableError
from eventplane.objects import errors

log = logging.getLogger("eventplane.reconcilers.informer")

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
Handler = Callable[..., Any]

RETRY_BASE = 0.1   # seconds; doubled on every consecutive failure to list or watch
RETRY_CAP = 5.0
LIST_PAGE = 500

__all__ = ["DEFAULT_INDEXERS", "BY_LABEL", "BY_NAMESPACE", "BY_NODE", "BY_OWNER", "Handlers", "IndexFunc",
           "Informer", "SharedInformerFactory", "Store", "by_label", "by_namespace", "by_node", "by_owner",
           "causation_of", "key_of", "label_value"]


# --- keys, positions and index functions ------------------------------------------------------

def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def key_of(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = _meta(obj)
    ns, name = meta.get("namespace"), meta.get("name", "")
    return f"{ns}/{name}" if ns else name


def causation_of(obj: Obj) -> int | None:
    """The position of the event that left `obj` in this state: its resourceVersion, as an int for
    the client's `causation=`. None for an object that carries none."""
    rv = _meta(obj).get("resourceVersion")
    return int(rv) if rv and str(rv).isdigit() else None


BY_NAMESPACE, BY_OWNER, BY_NODE, BY_LABEL = "namespace", "owner", "node", "label"


def by_namespace(obj: Obj) -> list[str]:
    ns = _meta(obj).get("namespace")
    return [ns] if ns else []


def by_owner(obj: Obj) -> list[str]:
    """The uids of the owners in ownerReferences: dependents of an owner are `by_index("owner", uid)`."""
    return [ref["uid"] for ref in _meta(obj).get("ownerReferences") or [] if ref.get("uid")]


def by_node(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def label_value(key: str, value: str) -> str:
    """The index value of a label, for `by_index("label", label_value("app", "web"))`."""
    return f"{key}={value}"


def by_label(obj: Obj) -> list[str]:
    return [label_value(k, v) for k, v in (_meta(obj).get("labels") or {}).items()]


DEFAULT_INDEXERS: dict[str, IndexFunc] = {BY_NAMESPACE: by_namespace, BY_OWNER: by_owner, BY_NODE: by_node,
                                          BY_LABEL: by_label}


# --- the store ----------------------------------------------------------------------------------

class Store:
    """Objects by key, with indexes. Every method is synchronous (no await inside), so in one event
    loop a reader always sees the store between two events, never half-way through one.

    Invariant: for each index, `_indices[name][value]` holds exactly the keys whose object's
    index function yields `value`."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        for name, fn in (DEFAULT_INDEXERS if indexers is None else indexers).items():
            self.add_indexer(name, fn)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """A pluggable index; may be added at any time (existing objects are indexed at once)."""
        existing = self._indexers.get(name)
        if existing is not None:
            if existing is fn:
                return
            raise ValueError(f"an index named {name!r} already exists with another function")
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by(self, name: str, *, namespace: str | None = None) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def index_keys(self, index: str, value: str) -> list[str]:
        return sorted(self._index(index).get(value, ()))

    def by_index(self, index: str, value: str) -> list[Obj]:
        """The objects whose index function yields `value`, in key order."""
        return [self._items[k] for k in self.index_keys(index, value)]

    def index_values(self, index: str) -> list[str]:
        return sorted(v for v, keys in self._index(index).items() if keys)

    def _index(self, index: str) -> dict[str, set[str]]:
        try:
            return self._indices[index]
        except KeyError:
            raise KeyError(f"no index named {index!r}; known: {sorted(self._indices)}") from None

    # Mutations: the informer's alone.

    def _put(self, key: str, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indices[name].setdefault(value, set()).add(key)
        return old

    def _pop(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


# --- the informer -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Handlers:
    on_add: Handler | None = None        # (obj)
    on_update: Handler | None = None     # (old, new)
    on_delete: Handler | None = None     # (last known obj, with the position of its deletion)


class Informer:
    """List-then-watch of one resource into a Store, notifying handlers. `async with` or start()/stop()."""

    def __init__(self, client: Client, resource: str, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 indexers: dict[str, IndexFunc] | None = None) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace            # None: all namespaces
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = Store(indexers)
        self.resource_version: str | None = None   # the position the cache is current to
        self.relists = 0                            # lists after the first (after Gone)
        self.stale_events = 0                       # watch events older than the cache, dropped
        self._positions: dict[str, int] = {}        # key -> position of the last event applied for it
        self._handlers: list[Handlers] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Informer({self.resource!r}, namespace={self.namespace!r}, rv={self.resource_version})"

    # --- for controllers ---

    def add_handler(self, *, on_add: Handler | None = None, on_update: Handler | None = None,
                    on_delete: Handler | None = None) -> Handlers:
        """Handlers may be plain or async functions. Added after sync, `on_add` is first called for
        every object in the cache, as client-go does for a late handler."""
        h = Handlers(on_add, on_update, on_delete)
        self._handlers.append(h)
        if self.has_synced and on_add is not None:
            for obj in self.store.list():
                result = on_add(obj)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
        return h

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the cache and its handlers were called."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def position_of(self, key: str) -> int | None:
        """The position of the last event applied for `key` (its deletion included): the causation
        of a write made while reconciling `key`."""
        return self._positions.get(key)

    # --- lifecycle ---

    def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"informer:{self.resource}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Informer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the reflector loop ---

    async def _run(self) -> None:
        failures = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                await self._watch()
                failures = 0
            except errors.GoneError:
                log.info("%s: resourceVersion %s is gone; listing again", self.resource, self.resource_version)
                need_list = True
                failures = 0
            except (UnreachableError, errors.EventplaneError) as exc:
                failures += 1
                log.warning("%s: %s; retrying", self.resource, exc)
                await asyncio.sleep(min(RETRY_BASE * 2 ** failures, RETRY_CAP))

    def _scope(self) -> dict[str, Any]:
        if self.namespace:
            return {"namespace": self.namespace}
        return {"all_namespaces": True}

    async def _list_and_replace(self) -> None:
        items: list[Obj] = []
        token: str | None = None
        rv: str | None = None
        while True:
            page = await self.client.list(self.resource, label_selector=self.label_selector,
                                          field_selector=self.field_selector, limit=LIST_PAGE,
                                          continue_token=token, **self._scope())
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            rv = rv or meta.get("resourceVersion")  # the first page's version is the list's
            token = meta.get("continue")
            if not token:
                break
        if self.has_synced:
            self.relists += 1
        await self._replace(items, rv)

    async def _replace(self, items: list[Obj], rv: str | None) -> None:
        """Make the cache equal to a list, notifying the differences (client-go's Replace)."""
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.store.keys() if k not in fresh]:
            old = self.store._pop(key)
            if rv is not None and rv.isdigit():
                self._positions[key] = int(rv)  # deleted at some position up to the list's
            await self._notify("on_delete", old)
        for key, obj in fresh.items():
            old = self.store.get(key)
            if old is not None and _meta(old).get("resourceVersion") == _meta(obj).get("resourceVersion"):
                continue
            self.store._put(key, obj)
            self._remember(key, obj)
            if old is None:
                await self._notify("on_add", obj)
            else:
                await self._notify("on_update", old, obj)
        self.resource_version = rv
        self._synced.set()

    async def _watch(self) -> None:
        async with self.client.watch(self.resource, resource_version=self.resource_version,
                                     label_selector=self.label_selector, field_selector=self.field_selector,
                                     **self._scope()) as w:
            async for type_, obj in w:
                await self._apply(type_, obj)

    async def _apply(self, type_: str, obj: Obj) -> None:
        key = key_of(obj)
        if type_ in ("ADDED", "MODIFIED", "DELETED") and self._stale(obj):
            return
        if type_ in ("ADDED", "MODIFIED"):
            old = self.store._put(key, obj)
            self._remember(key, obj)
            if old is None:
                await self._notify("on_add", obj)
            else:
                await self._notify("on_update", old, obj)
        elif type_ == "DELETED":
            self.store._pop(key)
            self._remember(key, obj)
            await self._notify("on_delete", obj)
        else:
            return
        rv = _meta(obj).get("resourceVersion")
        if rv:
            self.resource_version = rv

    def _stale(self, obj: Obj) -> bool:
        """An event at or before the position the cache is already current to. Positions are global and
        each watch event's is greater than the last (DESIGN invariant 3), so such an event is a
        duplicate or arrived out of order; applying it would take the cache back in time (a
        Deployment's old template, say), and a controller would act on that past. Dropped, counted."""
        pos = causation_of(obj)
        current = self.resource_version
        if pos is None or not current or not str(current).isdigit() or pos > int(current):
            return False
        self.stale_events += 1
        if self.stale_events <= 10 or self.stale_events % 1000 == 0:
            log.warning("%s: dropped an event at position %d, older than the cache's %s (%d so far): the "
                        "watch delivered it twice or out of order", self.resource, pos, current, self.stale_events)
        return True

    def _remember(self, key: str, obj: Obj) -> None:
        pos = causation_of(obj)
        if pos is not None:
            self._positions[key] = pos

    async def _notify(self, which: str, *args: Obj | None) -> None:
        for h in list(self._handlers):
            fn = getattr(h, which)
            if fn is None:
                continue
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a handler's bug must not stop the cache for everyone else
                log.exception("%s: %s handler failed", self.resource, which)


# --- sharing ------------------------------------------------------------------------------------

class SharedInformerFactory:
    """One informer per (resource, namespace, selectors) for every controller of a process."""

    def __init__(self, client: Client, *, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self._informers: dict[tuple[str, str | None, str | None, str | None], Informer] = {}

    def informer(self, resource: str, *, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        ns = namespace if namespace is not None else self.namespace
        key = (resource, ns, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(self.client, resource, namespace=ns,
                                                  label_selector=label_selector, field_selector=field_selector)
        return inf

    def __iter__(self):
        return iter(self._informers.values())

    def start(self) -> None:
        """Start every informer made so far (more may be made and started later)."""
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))

    async def __aenter__(self) -> SharedInformerFactory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())
