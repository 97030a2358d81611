"""The namespace controller: a namespace being deleted is emptied, then let go.

Fed by the namespaces informer. A namespace with a deletionTimestamp whose
spec.finalizers hold "kubernetes" (the API puts it on every namespace and
sets phase Terminating on delete) has every object of every namespaced
resource the server lists — custom resources included, found through
discovery each time — deleted (Background propagation; the garbage collector
follows owner references). What is still there (held by finalizers or a
grace period) is reported in the namespace's status conditions as
kube-controller-manager reports them, and the namespace is looked at again
after a delay (1 s, growing to 5 s). Once nothing is left, "kubernetes" is removed through
`namespaces/{name}/finalize`, and the API deletes the namespace for good when
no finalizer remains.

Decisions (`conditions`, `finalize_body`) are pure and unit-tested in
tests/unit/test_namespace_controller_unit.py.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors
from reconcilers.runner import Controller, Request

from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.namespace")

Obj = dict[str, Any]
FINALIZER = "kubernetes"
# Seconds before a namespace whose content is still going is looked at again: growing by half each time
# up to a cap, as a pod's grace period or someone's finalizer may take a while.
RECHECK, RECHECK_CAP = 1.0, 5.0
PARALLEL_DELETES = 16   # deletes in flight at once while emptying a namespace

# kube-controller-manager's condition types, in its order.
DISCOVERY, PARSING, CONTENT_FAILURE, CONTENT_REMAINING, FINALIZERS_REMAINING = (
    "NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")

__all__ = ["Progress", "build", "conditions", "finalize_body", "terminating"]


@dataclass
class Progress:
    """What one pass over a namespace's content found."""

    discovery_errors: list[str] = field(default_factory=list)
    delete_errors: list[str] = field(default_factory=list)
    remaining: Counter = field(default_factory=Counter)     # "pods." / "widgets.example.com" → count
    finalizers: Counter = field(default_factory=Counter)    # finalizer → objects holding it

    @property
    def done(self) -> bool:
        return not (self.discovery_errors or self.delete_errors or self.remaining)


def terminating(ns: Obj | None) -> bool:
    """Being deleted and still waiting for this controller."""
    if ns is None:
        return False
    return bool((ns.get("metadata") or {}).get("deletionTimestamp")) and \
        FINALIZER in ((ns.get("spec") or {}).get("finalizers") or [])


def _condition(type_: str, failed: bool, reason: str, message: str) -> Obj:
    return {"type": type_, "status": "True" if failed else "False", "reason": reason, "message": message}


def conditions(progress: Progress, old: list[Obj] | None, now: str) -> list[Obj]:
    """The namespace's deletion conditions (namespaced_resources_deleter.go's wording); a condition keeps
    its lastTransitionTime while its status stays."""
    p = progress
    new = [
        _condition(DISCOVERY, bool(p.discovery_errors), "DiscoveryFailed", "Discovery failed for some groups, "
                   f"{len(p.discovery_errors)} failing: {', '.join(p.discovery_errors)}")
        if p.discovery_errors else
        _condition(DISCOVERY, False, "ResourcesDiscovered", "All resources successfully discovered"),
        _condition(PARSING, False, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
        _condition(CONTENT_FAILURE, True, "ContentDeletionFailed", "Failed to delete all resource types, "
                   f"{len(p.delete_errors)} remaining: {', '.join(p.delete_errors)}")
        if p.delete_errors else
        _condition(CONTENT_FAILURE, False, "ContentDeleted",
                   "All content successfully deleted, may be waiting on finalization"),
        _condition(CONTENT_REMAINING, True, "SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
            f"{r} has {n} resource instances" for r, n in sorted(p.remaining.items())))
        if p.remaining else
        _condition(CONTENT_REMAINING, False, "ContentRemoved", "All content successfully removed"),
        _condition(FINALIZERS_REMAINING, True, "SomeFinalizersRemain",
                   "Some content in the namespace has finalizers remaining: " + ", ".join(
                       f"{f} in {n} resource instances" for f, n in sorted(p.finalizers.items())))
        if p.finalizers else
        _condition(FINALIZERS_REMAINING, False, "ContentHasNoFinalizers",
                   "All content-preserving finalizers finished"),
    ]
    before = {c.get("type"): c for c in old or []}
    for c in new:
        prev = before.get(c["type"])
        c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == c["status"] \
            and prev.get("lastTransitionTime") else now
    # Conditions of other types (someone else's) are kept after ours.
    return new + [c for c in old or [] if c.get("type") not in {x["type"] for x in new}]


def finalize_body(ns: Obj) -> Obj:
    """The namespace as PUT to namespaces/{name}/finalize: without this controller's finalizer."""
    out = {**ns, "spec": {**(ns.get("spec") or {})}}
    out["spec"]["finalizers"] = [f for f in out["spec"].get("finalizers") or [] if f != FINALIZER]
    return out


def _resource_name(group: str, resource: str) -> str:
    return f"{resource}.{group}"  # "pods." for the core group, as Kubernetes prints a GroupResource here


class NamespaceController:
    def __init__(self, client: Client, informer) -> None:
        self.client = client
        self.informer = informer
        self.controller: Controller | None = None
        self._passes: dict[str, int] = {}   # namespace → passes that left content behind

    async def delete_content(self, namespace: str, causation: int | None) -> Progress:
        progress = Progress()
        try:
            resources = await self.client.resources(refresh=True)
        except errors.EventplaneError as exc:
            progress.discovery_errors.append(str(exc))
            return progress
        seen: set[tuple[str, str]] = set()
        gates = asyncio.Semaphore(PARALLEL_DELETES)
        for info in resources:
            gr = (info.group, info.resource)
            if not info.namespaced or gr in seen or not {"list", "delete"} <= info.verbs:
                continue
            seen.add(gr)
            try:
                items = await self._list_all(info, namespace)
            except errors.NotFoundError:
                continue  # a CRD removed since discovery
            except errors.EventplaneError as exc:
                progress.delete_errors.append(f"{_resource_name(*gr)}: {exc}")
                continue
            for left in await asyncio.gather(*(self._delete_one(info, item, namespace, causation, progress, gates)
                                               for item in items)):
                if left is not None and (left.get("metadata") or {}).get("deletionTimestamp"):
                    progress.remaining[_resource_name(*gr)] += 1
                    for f in (left.get("metadata") or {}).get("finalizers") or []:
                        progress.finalizers[f] += 1
        return progress

    async def _delete_one(self, info, item: Obj, namespace: str, causation: int | None, progress: Progress,
                          gates: asyncio.Semaphore) -> Obj | None:
        """Delete one object (unless it is already going); what is left of it, None when gone."""
        meta = item.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return item
        async with gates:
            try:
                return await self.client.delete(info, meta["name"], namespace=namespace,
                                                propagation_policy="Background", causation=causation)
            except errors.NotFoundError:
                return None
            except errors.EventplaneError as exc:
                progress.delete_errors.append(f"{_resource_name(info.group, info.resource)}/{meta['name']}: {exc}")
                return None

    async def _list_all(self, info, namespace: str) -> list[Obj]:
        items: list[Obj] = []
        token = None
        while True:
            page = await self.client.list(info, namespace=namespace, limit=500, continue_token=token)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def reconcile(self, req: Request) -> None:
        ns = self.informer.store.get(req.key)
        if not terminating(ns):
            self._passes.pop(req.key, None)
            return
        progress = await self.delete_content(req.name, req.causation)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = ns.get("status") or {}
        new_conditions = conditions(progress, status.get("conditions"), now)
        try:
            if new_conditions != status.get("conditions"):
                ns = await self.client.update({**ns, "status": {**status, "conditions": new_conditions}},
                                              subresource="status", causation=req.causation)
            if progress.done:
                await self.client.update(finalize_body(ns), subresource="finalize", causation=req.causation)
                log.info("namespace %s emptied and finalized", req.name)
                self._passes.pop(req.key, None)
                return
        except errors.NotFoundError:
            return
        except errors.ConflictError:
            pass  # the cache is behind: look again shortly
        if self.controller is not None:
            passes = self._passes[req.key] = self._passes.get(req.key, 0) + 1
            self.controller.queue.add_after(req.key, min(RECHECK * 1.5 ** (passes - 1), RECHECK_CAP))


def build(ctx: ControllerContext) -> list[Controller]:
    informer = ctx.informers.informer("namespaces")
    nc = NamespaceController(ctx.client, informer)
    nc.controller = Controller("namespace", informer, nc.reconcile, workers=2)
    return [nc.controller]
