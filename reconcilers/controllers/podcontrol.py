"""What every controller that owns pods shares (Kubernetes' pkg/controller/controller_utils.go and
controller_ref_manager.go): owner references, pods made from a template, expectations, adoption and
release by selector, the order in which pods are deleted, readiness and availability.

Fed by the controllers (ReplicaSet, ReplicationController, and whoever else owns pods: Job,
StatefulSet, DaemonSet): they pass objects as their informers cached them. The pure parts
(`claim`, `active_pods_sort_key`, `is_pod_available`, `slow_start_batches`, `Expectations`)
have no I/O and are unit-tested without a server; `PodControl` is the thin side that writes
through eventplane.client, every write carrying `causation=` (DESIGN invariant 10).
"""
from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventplane.client import Client
from eventplane.client.coalesce import Coalescer
from eventplane.objects import errors
from eventplane.objects.meta import parse_time
from eventplane.objects.selectors import LabelSelector

Obj = dict[str, Any]

SLOW_START_INITIAL_BATCH_SIZE = 1   # controller.SlowStartInitialBatchSize
EXPECTATIONS_TIMEOUT = 300.0         # controller.ExpectationsTimeout: 5 minutes

__all__ = ["BY_ORPHAN_NAMESPACE", "EXPECTATIONS_TIMEOUT", "Claim", "Expectations", "PodControl", "active_pods_sort_key", "claim",
           "controller_ref", "controller_ref_of", "deletion_cost", "filter_active_pods", "is_pod_active", "is_pod_available",
           "is_pod_ready", "orphan_namespace", "pod_from_template", "pod_ready_since", "pods_prefix", "selector_of",
           "slow_start_batches"]


# --- owner references -----------------------------------------------------------------------------

def controller_ref(owner: Mapping[str, Any], *, api_version: str | None = None, kind: str | None = None) -> Obj:
    """metav1.NewControllerRef: the reference a controller puts on what it creates."""
    meta = owner.get("metadata") or {}
    return {"apiVersion": api_version or owner.get("apiVersion"), "kind": kind or owner.get("kind"),
            "name": meta.get("name"), "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}


def controller_ref_of(obj: Mapping[str, Any]) -> Obj | None:
    """metav1.GetControllerOf: the ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


BY_ORPHAN_NAMESPACE = "orphan-namespace"


def orphan_namespace(obj: Mapping[str, Any]) -> list[str]:
    """An index function: the namespace of an object no controller owns, so that a controller finds
    the orphans it may adopt without scanning its whole namespace on every sync."""
    if controller_ref_of(obj) is not None:
        return []
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def selector_of(obj: Mapping[str, Any]) -> LabelSelector:
    """The selector of a workload: a LabelSelector object (apps/v1, batch/v1), or a plain label map
    (v1 ReplicationController). A missing selector selects nothing."""
    sel = (obj.get("spec") or {}).get("selector")
    if sel is None:
        return LabelSelector(nothing=True)
    if obj.get("kind") == "ReplicationController" or (
            isinstance(sel, dict) and sel and "matchLabels" not in sel and "matchExpressions" not in sel):
        return LabelSelector.from_set(sel) if sel else LabelSelector(nothing=True)
    return LabelSelector.from_object(sel)


# --- pods from templates --------------------------------------------------------------------------

def pods_prefix(controller_name: str) -> str:
    """getPodsPrefix: `<name>-`, so the server's generateName adds Kubernetes' 5-character suffix."""
    return f"{controller_name}-"


def pod_from_template(template: Mapping[str, Any], owner: Mapping[str, Any], *, api_version: str | None = None,
                      kind: str | None = None, generate_name: str | None = None, name: str | None = None) -> Obj:
    """controller.GetPodFromTemplate: labels, annotations and finalizers of the template, its spec,
    the owner's controller reference, and a generateName (or a fixed name, as StatefulSets use)."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {"namespace": (owner.get("metadata") or {}).get("namespace")}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or pods_prefix((owner.get("metadata") or {}).get("name", ""))
    for key in ("labels", "annotations"):
        if tmeta.get(key):
            meta[key] = dict(tmeta[key])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    meta["ownerReferences"] = [controller_ref(owner, api_version=api_version, kind=kind)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


# --- pod state ------------------------------------------------------------------------------------

def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """controller.IsPodActive: not Succeeded, not Failed, not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def filter_active_pods(pods: Iterable[Mapping[str, Any]]) -> list[Obj]:
    return [p for p in pods if is_pod_active(p)]  # type: ignore[misc]


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def pod_ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became Ready (the Ready condition's lastTransitionTime), None if not ready."""
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """podutil.IsPodAvailable: ready for at least minReadySeconds (ready at all when it is 0)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def _restarts(pod: Mapping[str, Any]) -> int:
    return max((int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def deletion_cost(pod: Mapping[str, Any]) -> int:
    """The controller.kubernetes.io/pod-deletion-cost annotation (0 when absent or not an int32)."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        value = int(str(text))
    except (TypeError, ValueError):
        return 0
    return value if -2**31 <= value < 2**31 else 0


def active_pods_sort_key(pod: Mapping[str, Any], rank: int = 0) -> tuple:
    """The order of controller.ActivePodsWithRanks.Less: pods that sort first are deleted first.

    1. unassigned before assigned; 2. Pending before Unknown before Running; 3. not ready before
    ready; 4. lower pod-deletion-cost before higher; 5. higher rank (more related pods on the same
    node) before lower; 6. ready for less time before longer (no ready time first); 7. more restarts
    before fewer; 8. younger (newer creationTimestamp, none first) before older.
    """
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    assigned = bool((pod.get("spec") or {}).get("nodeName"))
    phase = _PHASE_RANK.get(status.get("phase") or "Pending", 0)
    ready = is_pod_ready(pod)
    since = pod_ready_since(pod) if ready else None
    created = parse_time(meta.get("creationTimestamp"))
    # An ascending tuple: whatever is deleted first sorts smaller.
    ready_for = (0, 0.0) if since is None else (1, -since.timestamp())
    age = (0, 0.0) if created is None else (1, -created.timestamp())
    return (assigned, phase, ready, deletion_cost(pod), -rank, ready_for if ready else (0, 0.0),
            -_restarts(pod), age, meta.get("name", ""))


# --- adoption and release -------------------------------------------------------------------------

@dataclass
class Claim:
    """What ClaimPods decides for one owner: the pods it owns after claiming, and the patches needed."""

    owned: list[Obj] = field(default_factory=list)
    adopt: list[Obj] = field(default_factory=list)     # orphans that match: add our controller reference
    release: list[Obj] = field(default_factory=list)   # ours that no longer match: drop our reference


def claim(owner: Mapping[str, Any], selector: LabelSelector, objs: Iterable[Mapping[str, Any]]) -> Claim:
    """ControllerRefManager.ClaimObject for each object, as a pure decision.

    Ours and matching → owned. Ours and not matching → released (unless the owner is being
    deleted). Owned by another controller → ignored. An orphan that matches → adopted (unless the
    owner or the orphan is being deleted)."""
    meta = owner.get("metadata") or {}
    uid, deleting = meta.get("uid"), bool(meta.get("deletionTimestamp"))
    out = Claim()
    for obj in objs:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        ref = controller_ref_of(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if selector.matches(labels):
                out.owned.append(obj)  # type: ignore[arg-type]
            elif not deleting:
                out.release.append(obj)  # type: ignore[arg-type]
            continue
        if deleting or not selector.matches(labels) or (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        out.adopt.append(obj)  # type: ignore[arg-type]
        out.owned.append(obj)  # type: ignore[arg-type]
    return out


# --- slow start -----------------------------------------------------------------------------------

def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH_SIZE) -> list[int]:
    """The batch sizes of controller.slowStartBatch: 1, 2, 4, … summing to count."""
    out, remaining, size = [], count, min(count, initial)
    while size > 0:
        out.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return out


async def slow_start(count: int, fn: Callable[[], Awaitable[None]],
                     initial: int = SLOW_START_INITIAL_BATCH_SIZE) -> tuple[int, BaseException | None]:
    """Call fn `count` times in growing concurrent batches; stop after the first batch with an error
    (so a quota or validation failure costs one call, not hundreds). Returns (successes, first error)."""
    done = 0
    for size in slow_start_batches(count, initial):
        results = await asyncio.gather(*(fn() for _ in range(size)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        done += size - len(failures)
        if failures:
            return done, failures[0]
    return done, None


# --- expectations ---------------------------------------------------------------------------------

class Expectations:
    """Kubernetes' ControllerExpectations, made exact by eventplane's positions.

    client-go counts the creations and deletions a controller asked for and waits until its
    informer has shown it as many; until then the controller must not act on its cache again,
    which does not yet show its own writes (acting would create the same pods twice). Here every
    write returns its position (the resourceVersion of its event) and positions are global and
    monotonic (DESIGN invariant 3), so "the informer has seen my writes" is "the informer is
    current to the position of my last write". A pod deleted with a grace period shows as an
    update at its position, a pod deleted at once as a deletion: either way the informer reaches
    it. An expectation older than `timeout` counts as met, as in client-go, so that a lost
    watch can never wedge a controller.

        expectations.wrote(key, created_pod)                 # after each write, with its answer
        if expectations.satisfied(key, pods.resource_version): act
    """

    def __init__(self, *, timeout: float = EXPECTATIONS_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._items: dict[str, tuple[int, float]] = {}   # key -> (highest position written, when)

    def wrote(self, key: str, obj_or_position: Mapping[str, Any] | int | None) -> None:
        """Remember a write made for `key` (its answer, or its position)."""
        if isinstance(obj_or_position, Mapping):
            rv = (obj_or_position.get("metadata") or {}).get("resourceVersion")
            position = int(rv) if rv and str(rv).isdigit() else 0
        else:
            position = int(obj_or_position or 0)
        if position <= 0:
            return
        old = self._items.get(key)
        if old is None or old[0] < position:
            self._items[key] = (position, self.clock())

    def satisfied(self, key: str, seen: str | int | None) -> bool:
        """Whether an informer current to position `seen` shows every write remembered for key."""
        item = self._items.get(key)
        if item is None:
            return True
        position, at = item
        seen_pos = int(seen) if seen is not None and str(seen).isdigit() else 0
        if seen_pos >= position or self.clock() - at > self.timeout:
            del self._items[key]
            return True
        return False

    def pending(self, key: str) -> int | None:
        """The position key waits for, None when it waits for nothing."""
        item = self._items.get(key)
        return item[0] if item else None

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# --- the writes -----------------------------------------------------------------------------------

class PodControl:
    """controller.RealPodControl over eventplane.client: create from a template, delete, patch owner
    references. Every call takes the causation position of the event that led to it."""

    def __init__(self, client: Client, *, field_manager: str | None = None) -> None:
        self.client = client
        self.field_manager = field_manager
        # A slow-start batch's creates, made at once, go as one request (coalesce.py).
        self._pods = Coalescer(client, "pods") if field_manager is None else None

    async def create_pod(self, template: Mapping[str, Any], owner: Mapping[str, Any], *, causation: int | None,
                         api_version: str | None = None, kind: str | None = None,
                         generate_name: str | None = None, name: str | None = None) -> Obj:
        pod = pod_from_template(template, owner, api_version=api_version, kind=kind, generate_name=generate_name,
                                name=name)
        if not (pod["metadata"].get("labels")):
            raise errors.InvalidError("unable to create pods, no labels")
        if self._pods is not None:
            return await self._pods.write(pod, causation=causation)
        return await self.client.create(pod, namespace=pod["metadata"]["namespace"], causation=causation,
                                        field_manager=self.field_manager)

    async def delete_pod(self, namespace: str, name: str, *, causation: int | None) -> None:
        try:
            await self.client.delete("pods", name, namespace=namespace, causation=causation)
        except errors.NotFoundError:
            pass  # already gone: what we wanted

    async def adopt(self, obj: Mapping[str, Any], owner: Mapping[str, Any], *, causation: int | None,
                    resource: str = "pods", api_version: str | None = None, kind: str | None = None) -> Obj:
        """Add our controller reference. The patch carries the object's resourceVersion, so an object
        changed since we looked (perhaps adopted by someone else) is a conflict, not a double owner."""
        meta = obj.get("metadata") or {}
        refs = [*(meta.get("ownerReferences") or []), controller_ref(owner, api_version=api_version, kind=kind)]
        return await self.client.patch(resource, meta["name"], {"metadata": {
            "ownerReferences": refs, "resourceVersion": meta.get("resourceVersion")}},
            type="merge", namespace=meta.get("namespace"), causation=causation)

    async def release(self, obj: Mapping[str, Any], owner: Mapping[str, Any], *, causation: int | None,
                      resource: str = "pods") -> Obj | None:
        """Drop our reference (orphan the object), again guarded by its resourceVersion."""
        meta = obj.get("metadata") or {}
        uid = (owner.get("metadata") or {}).get("uid")
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
        try:
            return await self.client.patch(resource, meta["name"], {"metadata": {
                "ownerReferences": refs or None, "resourceVersion": meta.get("resourceVersion")}},
                type="merge", namespace=meta.get("namespace"), causation=causation)
        except errors.NotFoundError:
            return None
