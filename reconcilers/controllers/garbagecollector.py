"""The garbage collector: ownerReferences honoured with background, foreground and orphan propagation.

Fed by one informer per resource the server lists and watches (found through
discovery, followed as CustomResourceDefinitions come and go), which together
form the dependency graph: the `owner` index of each cache maps an owner's uid
to its dependents. Consumed by the API: deletes of dependents, updates of
their ownerReferences, and the removal of the `foregroundDeletion` and
`orphan` finalizers from owners.

What the API does (eventplane/api/registry.py): a delete with
propagationPolicy Foreground marks the owner deleted with the
`foregroundDeletion` finalizer, which stays until the collector removes it.
Orphan marks the owner deleted with the `orphan` finalizer (so no controller
adopts what it is losing), orphans the dependents and removes the finalizer
itself in the same request; the collector finishes an orphaning the server
left half-done (and one whose finalizer was set by hand). Background and the
default delete the owner at once.

Decisions (pure, table-tested in tests/unit/test_gc.py):

- `decide_dependent`: an object whose owners are all gone is deleted (with the
  policy its own finalizers ask for, Background otherwise); one with a living
  owner only loses its references to owners that are gone; one whose owners
  are all gone or waiting for their dependents is deleted in the foreground
  when it has dependents itself, so the chain is waited for all the way down.
- `decide_deleting`: an owner waiting for its dependents (foregroundDeletion)
  has every dependent deleted; its finalizer goes once no dependent with
  blockOwnerDeletion is left. An owner with the orphan finalizer has its
  references removed from every dependent, then the finalizer.

An owner missing from the cache is looked up live before anything is deleted:
the owner's informer may simply not have seen it yet. Queue keys name
resources, not kinds: `group/resource/namespace/name`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo
from reconcilers.informer import BY_OWNER, Informer, key_of
from reconcilers.runner import Controller, run_workers
from reconcilers.workqueue import WorkQueue

from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.gc")

Obj = dict[str, Any]
FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"
BACKGROUND_POLICY, FOREGROUND_POLICY, ORPHAN_POLICY = "Background", "Foreground", "Orphan"
# Owner states, as the collector's graph sees them.
ABSENT, SOLID, WAITING = "absent", "solid", "waiting"
# Never owners nor owned in practice, and the busiest streams of the log.
UNWATCHED = {("", "events"), ("events.k8s.io", "events")}

__all__ = ["Delete", "Dependent", "GarbageCollector", "RemoveFinalizer", "Ref", "UpdateOwnerReferences", "build",
           "decide_deleting", "decide_dependent"]


# --- identities and actions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ref:
    """One object of one resource (not kind: kinds resolve to resources through discovery)."""

    group: str
    resource: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.group}/{self.resource}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, key: str) -> Ref:
        group, resource, namespace, name = key.split("/", 3)
        return cls(group, resource, namespace, name)

    @property
    def cache_key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Delete:
    ref: Ref
    uid: str
    policy: str


@dataclass(frozen=True)
class UpdateOwnerReferences:
    """Drop the references to `drop`, and set blockOwnerDeletion false on those to `unblock`."""

    ref: Ref
    uid: str
    drop: frozenset[str] = frozenset()
    unblock: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RemoveFinalizer:
    ref: Ref
    uid: str
    finalizer: str


Action = Delete | UpdateOwnerReferences | RemoveFinalizer


@dataclass(frozen=True)
class Dependent:
    """What deciding about an owner needs to know of one of its dependents."""

    ref: Ref
    uid: str
    deleting: bool          # has a deletionTimestamp
    blocking: bool          # its reference to the owner has blockOwnerDeletion: true
    has_dependents: bool    # owns something itself


# --- decisions ----------------------------------------------------------------------------------------------

def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def own_policy(obj: Obj) -> str:
    """The propagation an object's own finalizers ask for when it is collected."""
    finalizers = _meta(obj).get("finalizers") or []
    if ORPHAN in finalizers:
        return ORPHAN_POLICY
    if FOREGROUND in finalizers:
        return FOREGROUND_POLICY
    return BACKGROUND_POLICY


def decide_dependent(ref: Ref, obj: Obj, owners: Mapping[str, str], *, has_dependents: bool) -> list[Action]:
    """An object with ownerReferences, given the state of each owner (uid → absent | solid | waiting)."""
    meta = _meta(obj)
    refs = meta.get("ownerReferences") or []
    if not refs or meta.get("deletionTimestamp"):
        return []
    uid = meta.get("uid", "")
    dangling = frozenset(r["uid"] for r in refs if owners.get(r.get("uid")) == ABSENT)
    waiting = frozenset(r["uid"] for r in refs if owners.get(r.get("uid")) == WAITING)
    solid = [r for r in refs if owners.get(r.get("uid"), SOLID) == SOLID]
    if solid:
        blocked = frozenset(r["uid"] for r in refs if r.get("uid") in waiting and r.get("blockOwnerDeletion"))
        if dangling or blocked:
            return [UpdateOwnerReferences(ref, uid, drop=dangling, unblock=blocked)]
        return []
    if waiting and has_dependents:
        return [Delete(ref, uid, FOREGROUND_POLICY)]
    return [Delete(ref, uid, own_policy(obj))]


def decide_deleting(ref: Ref, obj: Obj, dependents: Iterable[Dependent]) -> list[Action]:
    """An owner being deleted that holds the orphan or foregroundDeletion finalizer."""
    meta = _meta(obj)
    finalizers = meta.get("finalizers") or []
    if not meta.get("deletionTimestamp"):
        return []
    uid = meta.get("uid", "")
    deps = list(dependents)
    if ORPHAN in finalizers:
        return [UpdateOwnerReferences(d.ref, d.uid, drop=frozenset({uid})) for d in deps] + \
            [RemoveFinalizer(ref, uid, ORPHAN)]
    if FOREGROUND in finalizers:
        actions: list[Action] = [Delete(d.ref, d.uid, FOREGROUND_POLICY if d.has_dependents else BACKGROUND_POLICY)
                                 for d in deps if not d.deleting]
        if not any(d.blocking for d in deps):
            actions.append(RemoveFinalizer(ref, uid, FOREGROUND))
        return actions
    return []


def owner_state(owner: Obj | None, uid: str) -> str:
    if owner is None or _meta(owner).get("uid") != uid:
        return ABSENT
    m = _meta(owner)
    if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or []):
        return WAITING
    return SOLID


def graph_changed(old: Obj, new: Obj) -> bool:
    """Whether an update matters to the collector: references, deletion or finalizers changed."""
    o, n = _meta(old), _meta(new)
    return any(o.get(k) != n.get(k) for k in ("ownerReferences", "deletionTimestamp", "finalizers", "uid"))


# --- the loop --------------------------------------------------------------------------------------------

class GarbageCollector(Controller):
    """The collector's thin loop: many informers (one per resource), one queue of object keys."""

    def __init__(self, ctx: ControllerContext, *, workers: int = 4) -> None:
        # Not Controller.__init__: the collector has no single primary informer.
        self.name = "garbage-collector"
        self.ctx = ctx
        self.client: Client = ctx.client
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(name=self.name)
        self.informer = ctx.informers.informer("customresourcedefinitions")
        self.reconcile = self._reconcile
        self.informers: dict[tuple[str, str], Informer] = {}
        self.infos: dict[tuple[str, str], ResourceInfo] = {}
        self._uids: dict[str, str] = {}        # uid -> queue key of every object seen
        self._causes: dict[str, int] = {}      # queue key -> position of the event that queued it
        self._rediscover = asyncio.Event()

    # --- the graph ---

    async def discover(self) -> list[Informer]:
        """Watch every resource that can be listed, watched and deleted; returns the new informers."""
        resources = await self.client.resources(refresh=True)
        added = []
        for info in resources:
            gr = (info.group, info.resource)
            if gr in self.informers or gr in UNWATCHED or not {"list", "watch", "delete"} <= info.verbs:
                continue
            found = resources.find(info.resource)
            name = info.resource if found is not None and (found.group, found.resource) == gr \
                else f"{info.resource}.{info.group}"
            inf = self.ctx.informers.informer(name)
            self.informers[gr] = inf
            self.infos[gr] = info
            self._watch(gr, inf)
            added.append(inf)
        return added

    def _watch(self, gr: tuple[str, str], inf: Informer) -> None:
        def ref_of(obj: Obj) -> Ref:
            return Ref(gr[0], gr[1], _meta(obj).get("namespace") or "", _meta(obj).get("name", ""))

        def on_add(obj: Obj) -> None:
            ref = ref_of(obj)
            self._uids[_meta(obj).get("uid", "")] = ref.key
            if _meta(obj).get("ownerReferences") or _held(obj):
                self._enqueue(ref.key, obj)

        def on_update(old: Obj, new: Obj) -> None:
            if not graph_changed(old, new):
                return
            ref = ref_of(new)
            self._uids[_meta(new).get("uid", "")] = ref.key
            self._enqueue(ref.key, new)
            self._enqueue_owners(old, new)
            if _meta(new).get("deletionTimestamp") and not _meta(old).get("deletionTimestamp"):
                self._enqueue_dependents(new)

        def on_delete(obj: Obj) -> None:
            self._uids.pop(_meta(obj).get("uid", ""), None)
            self._causes.pop(ref_of(obj).key, None)
            self._enqueue_dependents(obj)
            self._enqueue_owners(obj)

        inf.add_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    def _enqueue(self, key: str, cause: Obj) -> None:
        rv = _meta(cause).get("resourceVersion")
        if rv and str(rv).isdigit():
            self._causes[key] = max(self._causes.get(key, 0), int(rv))
        self.queue.add(key)

    def _enqueue_dependents(self, owner: Obj) -> None:
        for dep_key in self.dependent_keys(_meta(owner).get("uid", "")):
            self._enqueue(dep_key, owner)

    def _enqueue_owners(self, *objs: Obj) -> None:
        for obj in objs:
            for r in _meta(obj).get("ownerReferences") or []:
                key = self._uids.get(r.get("uid", ""))
                if key is not None:
                    self._enqueue(key, obj)

    def dependent_keys(self, uid: str) -> list[str]:
        if not uid:
            return []
        out = []
        for (group, resource), inf in self.informers.items():
            for obj in inf.store.by_index(BY_OWNER, uid):
                out.append(Ref(group, resource, _meta(obj).get("namespace") or "", _meta(obj)["name"]).key)
        return out

    def cached(self, ref: Ref) -> Obj | None:
        inf = self.informers.get((ref.group, ref.resource))
        return inf.store.get(ref.cache_key) if inf is not None else None

    def resolve_owner(self, api_version: str, kind: str) -> ResourceInfo | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        for info in self.infos.values():
            if info.group == group and info.kind == kind:
                return info
        return None

    async def owner_states(self, obj: Obj) -> dict[str, str]:
        namespace = _meta(obj).get("namespace") or ""
        states: dict[str, str] = {}
        for r in _meta(obj).get("ownerReferences") or []:
            uid = r.get("uid", "")
            info = self.resolve_owner(r.get("apiVersion", ""), r.get("kind", ""))
            if info is None:
                log.warning("%s %s: owner kind %s/%s is not served; leaving it alone", key_of(obj),
                            _meta(obj).get("uid"), r.get("apiVersion"), r.get("kind"))
                states[uid] = SOLID
                continue
            if info.namespaced and not namespace:
                states[uid] = ABSENT  # a cluster-scoped object cannot be owned by a namespaced one
                continue
            ref = Ref(info.group, info.resource, namespace if info.namespaced else "", r.get("name", ""))
            state = owner_state(self.cached(ref), uid)
            if state == ABSENT:  # the owner's cache may lag behind the dependent's: ask the API
                try:
                    state = owner_state(await self.client.get(info, ref.name, namespace=ref.namespace or None), uid)
                except errors.NotFoundError:
                    state = ABSENT
            states[uid] = state
        return states

    def dependents(self, uid: str) -> list[Dependent]:
        out = []
        for key in self.dependent_keys(uid):
            ref = Ref.parse(key)
            obj = self.cached(ref)
            if obj is None:
                continue
            m = _meta(obj)
            blocking = any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in m.get("ownerReferences") or [])
            out.append(Dependent(ref, m.get("uid", ""), bool(m.get("deletionTimestamp")), blocking,
                                 bool(self.dependent_keys(m.get("uid", "")))))
        return out

    # --- reconcile ---

    async def _reconcile(self, key: str) -> None:
        ref = Ref.parse(key)
        obj = self.cached(ref)
        if obj is None:
            return
        if _held(obj):
            actions = decide_deleting(ref, obj, self.dependents(_meta(obj).get("uid", "")))
        elif _meta(obj).get("ownerReferences") and not _meta(obj).get("deletionTimestamp"):
            actions = decide_dependent(ref, obj, await self.owner_states(obj),
                                       has_dependents=bool(self.dependent_keys(_meta(obj).get("uid", ""))))
        else:
            return
        causation = self._causes.get(key)
        for action in actions:
            await self.act(action, causation)

    async def act(self, action: Action, causation: int | None) -> None:
        info = self.infos[(action.ref.group, action.ref.resource)]
        ns = action.ref.namespace or None
        try:
            if isinstance(action, Delete):
                log.info("deleting %s (%s propagation)", action.ref.key, action.policy)
                # By uid: a dependent deleted and made again under its name since we looked is not hit.
                await self.client.delete(info, action.ref.name, namespace=ns, propagation_policy=action.policy,
                                         causation=causation, preconditions={"uid": action.uid})
                return
            live = await self.client.get(info, action.ref.name, namespace=ns)
            m = _meta(live)
            if m.get("uid") != action.uid:
                return
            if isinstance(action, RemoveFinalizer):
                if action.finalizer not in (m.get("finalizers") or []):
                    return
                m["finalizers"] = [f for f in m["finalizers"] if f != action.finalizer]
            else:
                refs = []
                for r in m.get("ownerReferences") or []:
                    if r.get("uid") in action.drop:
                        continue
                    if r.get("uid") in action.unblock:
                        r = {**r, "blockOwnerDeletion": False}
                    refs.append(r)
                if refs == (m.get("ownerReferences") or []):
                    return
                if refs:
                    m["ownerReferences"] = refs
                else:
                    m.pop("ownerReferences", None)
            await self.client.update(live, causation=causation)
        except errors.NotFoundError:
            pass  # already gone: nothing left to do for it

    # --- running ---

    async def run(self) -> None:
        crds = self.informer
        crds.add_handler(on_add=lambda o: self._rediscover.set(), on_update=lambda o, n: self._rediscover.set(),
                         on_delete=lambda o: self._rediscover.set())
        crds.start()
        await crds.wait_synced()
        self._rediscover.clear()
        for inf in await self.discover():
            inf.start()
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers.values()))
        await run_workers(self.name, self.queue, self._reconcile, workers=self.workers,
                          quiet=(errors.ConflictError,), also=[self._follow_crds()])

    async def _follow_crds(self) -> None:
        while True:
            await self._rediscover.wait()
            self._rediscover.clear()
            await asyncio.sleep(0.2)  # let a burst of CRD changes settle into one discovery
            try:
                for inf in await self.discover():
                    inf.start()
            except (errors.EventplaneError, OSError) as exc:
                log.warning("discovery after a CRD change failed: %s; retrying", exc)
                self._rediscover.set()
                await asyncio.sleep(1)


def _held(obj: Obj) -> bool:
    """Being deleted and waiting for the collector (foreground or orphan propagation)."""
    m = _meta(obj)
    return bool(m.get("deletionTimestamp")) and bool({FOREGROUND, ORPHAN} & set(m.get("finalizers") or []))


def build(ctx: ControllerContext) -> list[Controller]:
    return [GarbageCollector(ctx)]
