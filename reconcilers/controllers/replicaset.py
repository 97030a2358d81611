"""The ReplicaSet controller (and, with the same code, the ReplicationController manager), as
Kubernetes' pkg/controller/replicaset.

Fed by three informers of the shared factory: the ReplicaSets (or ReplicationControllers) and the
pods. A pod event wakes its controller (by controller reference) or, for an orphan, every set whose
selector matches it. Reconcile is level-triggered:

1. claim: adopt matching orphans, release owned pods that no longer match (podcontrol.claim);
2. decide (`manage_replicas`, pure): how many pods to create, which to delete (unscheduled,
   not ready, younger first: Kubernetes' ActivePods order, ranked by pods on the same node);
3. act: creates in slow-start batches (1, 2, 4, …) of at most BURST_REPLICAS per sync, deletes
   concurrently, each with `causation=` the set's position; then wait (Expectations) until the pod
   informer has seen those writes before deciding again;
4. status (`replica_set_status`, pure): replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas (minReadySeconds), observedGeneration, the ReplicaFailure condition —
   written to the status subresource only when it changed.

Consumed by the Deployment controller, which reads the sets' status to pace a rollout.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from eventplane.objects import errors
from reconcilers.informer import BY_NAMESPACE, BY_OWNER, Informer, key_of
from reconcilers.runner import Controller, Request, Requeue

from ._workload import EventRecorder
from .podcontrol import (BY_ORPHAN_NAMESPACE, Expectations, PodControl, active_pods_sort_key, claim,
                         controller_ref_of, filter_active_pods, is_pod_active, is_pod_available, is_pod_ready,
                         orphan_namespace, selector_of, slow_start)
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.replicaset")

Obj = dict[str, Any]

BURST_REPLICAS = 500     # replicaset.BurstReplicas: at most this many creates or deletes per sync
WORKERS = 5              # ConcurrentRSSyncs
# Pod events wake their set after this long, so that a burst of them (a thousand pods created, bound
# and started within seconds) costs one sync per window instead of one per event: a sync is O(pods of
# the set), and Python pays for it. Creates never wait on it: they happen inside one sync.
POD_EVENT_DELAY = 0.05
# A pod change that only moves the status counts (bound, started, ready) waits longer: a thousand pods
# turning ready would otherwise cost a status write of the set (and of its Deployment) every 50 ms,
# a good share of what the API can write while the scheduler and the nodes need it.
POD_STATUS_DELAY = 0.25
REPLICA_FAILURE = "ReplicaFailure"

__all__ = ["BURST_REPLICAS", "REPLICASET", "REPLICATION_CONTROLLER", "ReplicaDiff", "ReplicaSetController",
           "WorkloadKind", "build", "build_replicationcontroller", "manage_replicas", "pods_to_delete",
           "replica_set_status", "status_changed"]


@dataclass(frozen=True)
class WorkloadKind:
    resource: str
    api_version: str
    kind: str


REPLICASET = WorkloadKind("replicasets.apps", "apps/v1", "ReplicaSet")
REPLICATION_CONTROLLER = WorkloadKind("replicationcontrollers", "v1", "ReplicationController")


# --- decisions (pure) -----------------------------------------------------------------------------

@dataclass
class ReplicaDiff:
    """What one sync does to the pods: create `create` pods, delete these pods."""

    create: int = 0
    delete: list[Obj] = field(default_factory=list)


def _replicas(obj: Mapping[str, Any]) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def _node(pod: Mapping[str, Any]) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


def pods_to_delete(filtered: list[Obj], related: Iterable[Mapping[str, Any]] | None, count: int) -> list[Obj]:
    """getPodsToDelete: the first `count` pods in ActivePodsWithRanks order, where a pod's rank is how
    many related active pods (of the set and its siblings under one Deployment) share its node."""
    if count >= len(filtered):
        return list(filtered)
    on_node: dict[str, int] = {}
    for p in related if related is not None else filtered:
        if _node(p):
            on_node[_node(p)] = on_node.get(_node(p), 0) + 1
    ranked = sorted(filtered, key=lambda p: active_pods_sort_key(p, on_node.get(_node(p), 0) if _node(p) else 0))
    return ranked[:count]


def manage_replicas(rs: Mapping[str, Any], active_pods: list[Obj], *, related: Iterable[Mapping[str, Any]] | None = None,
                    burst: int = BURST_REPLICAS) -> ReplicaDiff:
    """manageReplicas' decision: the difference between the owned active pods and spec.replicas,
    at most `burst` per sync."""
    diff = len(active_pods) - _replicas(rs)
    if diff < 0:
        return ReplicaDiff(create=min(-diff, burst))
    if diff > 0:
        return ReplicaDiff(delete=pods_to_delete(active_pods, related, min(diff, burst)))
    return ReplicaDiff()


def _template_labels_match(pod: Mapping[str, Any], template_labels: Mapping[str, str]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in template_labels.items())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def replica_set_status(rs: Mapping[str, Any], active_pods: list[Obj], *, now: datetime | None = None,
                       manage_error: str | None = None, manage_diff: int = 0) -> Obj:
    """calculateStatus: the counts over the owned active pods, observedGeneration, and the
    ReplicaFailure condition (set on a failed create or delete, cleared by a sync without error).
    `manage_diff` is len(pods) − replicas at the time of the error (its sign names the reason)."""
    now = now or _now()
    spec = rs.get("spec") or {}
    old = rs.get("status") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    status: Obj = {
        "replicas": len(active_pods),
        "fullyLabeledReplicas": sum(1 for p in active_pods if _template_labels_match(p, template_labels)),
        "readyReplicas": sum(1 for p in active_pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in active_pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": (rs.get("metadata") or {}).get("generation", 0),
    }
    conditions = [dict(c) for c in old.get("conditions") or []]
    failure = next((c for c in conditions if c.get("type") == REPLICA_FAILURE), None)
    if manage_error is not None and failure is None:
        reason = "FailedCreate" if manage_diff < 0 else "FailedDelete" if manage_diff > 0 else ""
        conditions.append({"type": REPLICA_FAILURE, "status": "True", "lastTransitionTime": _rfc3339(now),
                           "reason": reason, "message": manage_error})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
    if conditions:
        status["conditions"] = conditions
    return status


_STATUS_FIELDS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration",
                  "conditions")


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a status write is needed (zero counts are omitted on the wire, as Go omits them)."""
    old = old or {}
    return any((old.get(f) or None) != (new.get(f) or None) for f in _STATUS_FIELDS)


def requeue_for_availability(rs: Mapping[str, Any], status: Mapping[str, Any]) -> float | None:
    """Seconds after which to sync again so that pods ready but not yet minReadySeconds old are
    counted available (syncReplicaSet's AddAfter), None when there is nothing to wait for."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    if min_ready > 0 and status.get("readyReplicas") == _replicas(rs) and \
            status.get("availableReplicas") != _replicas(rs):
        return float(min_ready)
    return None


# --- the loop ---------------------------------------------------------------------------------------

class ReplicaSetController:
    """The thin side: informers → keys → claim, decide, act, status. One per kind (RS, RC)."""

    def __init__(self, ctx: ControllerContext, kind: WorkloadKind = REPLICASET, *, workers: int = WORKERS,
                 burst: int = BURST_REPLICAS, pod_event_delay: float = POD_EVENT_DELAY,
                 pod_status_delay: float = POD_STATUS_DELAY) -> None:
        self.kind = kind
        self.pod_event_delay, self.pod_status_delay = pod_event_delay, pod_status_delay
        self.client = ctx.client
        self.burst = burst
        self.sets: Informer = ctx.informers.informer(kind.resource)
        self.pods: Informer = ctx.informers.informer("pods")
        self.pods.add_indexer(BY_ORPHAN_NAMESPACE, orphan_namespace)
        self.expectations = Expectations()
        self.pod_control = PodControl(ctx.client)
        # Failures only: Kubernetes also records SuccessfulCreate/SuccessfulDelete for every pod, which
        # would double the writes of a scale-up; `epctl history` and `why` already tell those.
        self.events = EventRecorder(ctx.client, component=f"{kind.kind.lower()}-controller", instance=ctx.identity,
                                    enabled=bool(ctx.options.get("events", True)))
        self.controller = Controller(f"{kind.kind.lower()}-controller", self.sets, self.sync, workers=workers)
        self.sets.add_handler(on_delete=lambda obj: self.expectations.forget(key_of(obj)))
        self.pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # --- pod events → keys ---

    def _wake(self, key: str, delay: float | None = None) -> None:
        self.controller.queue.add_after(key, self.pod_event_delay if delay is None else delay)

    def _owner_key(self, pod: Mapping[str, Any]) -> str | None:
        ref = controller_ref_of(pod)
        if ref is None or ref.get("kind") != self.kind.kind:
            return None
        ns = (pod.get("metadata") or {}).get("namespace")
        key = f"{ns}/{ref.get('name')}"
        rs = self.sets.store.get(key)
        if rs is None or (rs.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_sets(self, pod: Mapping[str, Any]) -> list[str]:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        out = []
        for rs in self.sets.store.by_index(BY_NAMESPACE, meta.get("namespace") or ""):
            try:
                if selector_of(rs).matches(labels):
                    out.append(key_of(rs))
            except errors.EventplaneError:
                continue
        return out

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self._wake(key)
        elif controller_ref_of(pod) is None:
            for k in self._matching_sets(pod):
                self._wake(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        labels_changed = (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels")
        if old_key != new_key and old_key is not None:
            self._wake(old_key)
        if new_key is not None:
            counts_only = old_key == new_key and not labels_changed and is_pod_active(old) == is_pod_active(new)
            self._wake(new_key, self.pod_status_delay if counts_only else None)
            rs = self.sets.store.get(new_key)
            min_ready = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.controller.queue.add_after(new_key, float(min_ready))
        elif controller_ref_of(new) is None and (labels_changed or controller_ref_of(old) is not None):
            for k in self._matching_sets(new):
                self._wake(k)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self._wake(key)

    # --- reconcile ---

    def _candidates(self, rs: Obj) -> list[Obj]:
        """Pods this set may claim: those it controls, and the orphans of its namespace."""
        meta = rs["metadata"]
        owned = self.pods.store.by_index(BY_OWNER, meta.get("uid") or "")
        return owned + self.pods.store.by_index(BY_ORPHAN_NAMESPACE, meta.get("namespace") or "")

    def _related(self, rs: Obj) -> list[Obj]:
        """Active pods of this set and of its siblings under the same controller (for ranking)."""
        ref = controller_ref_of(rs)
        if ref is None:
            return []
        out: list[Obj] = []
        for sibling in self.sets.store.by_index(BY_OWNER, ref.get("uid") or ""):
            out += filter_active_pods(self.pods.store.by_index(BY_OWNER, sibling["metadata"].get("uid") or ""))
        return out

    async def sync(self, request: Request) -> None:
        key, causation = request.key, request.causation
        rs = self.sets.store.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key, self.pods.resource_version) and \
            not rs["metadata"].get("deletionTimestamp")
        try:
            selector = selector_of(rs)
        except errors.EventplaneError as exc:
            log.warning("%s %s: invalid selector: %s", self.kind.kind, key, exc)
            return
        decision = claim(rs, selector, filter_active_pods(self._candidates(rs)))
        owned = [p for p in decision.owned]
        for pod in decision.adopt:
            try:
                await self.pod_control.adopt(pod, rs, causation=causation, api_version=self.kind.api_version,
                                             kind=self.kind.kind)
            except (errors.ConflictError, errors.NotFoundError):
                owned = [p for p in owned if p is not pod]   # changed or gone since we looked: not ours
        for pod in decision.release:
            try:
                await self.pod_control.release(pod, rs, causation=causation)
            except errors.ConflictError:
                pass

        manage_error: str | None = None
        manage_diff = 0
        if needs_sync:
            related = self._related(rs) if len(owned) > _replicas(rs) else None   # ranks matter to deletes only
            diff = manage_replicas(rs, owned, related=related, burst=self.burst)
            manage_diff = len(owned) - _replicas(rs)
            manage_error = await self._act(key, rs, diff, causation)

        status = replica_set_status(rs, owned, manage_error=manage_error, manage_diff=manage_diff)
        if status_changed(rs.get("status"), status):
            try:
                await self._write_status(rs, status, causation)
            except errors.ConflictError:
                raise Requeue() from None   # the informer brings the newer version; try again
            except errors.NotFoundError:
                return
        if manage_error is not None:
            raise Requeue()
        after = requeue_for_availability(rs, status)
        if after is not None:
            self.controller.queue.add_after(key, after)

    async def _write_status(self, rs: Obj, status: Obj, causation: int | None) -> None:
        """updateReplicaSetStatus: on a conflict (the Deployment controller scaled the set meanwhile)
        read the set afresh and write the same status once more; the counts are of pods, which the
        set's new spec does not change. A second conflict goes back to the queue."""
        try:
            await self.client.update({**rs, "status": status}, subresource="status", causation=causation)
        except errors.ConflictError:
            fresh = await self.client.get(self.kind.resource, rs["metadata"]["name"],
                                          namespace=rs["metadata"].get("namespace"))
            if fresh["metadata"].get("uid") != rs["metadata"].get("uid"):
                return
            await self.client.update({**fresh, "status": status}, subresource="status", causation=causation)

    async def _act(self, key: str, rs: Obj, diff: ReplicaDiff, causation: int | None) -> str | None:
        """Carry out a decision; the first error's message, or None."""
        template = (rs.get("spec") or {}).get("template") or {}
        if diff.create:
            async def create() -> None:
                pod = await self.pod_control.create_pod(template, rs, causation=causation,
                                                        api_version=self.kind.api_version, kind=self.kind.kind)
                self.expectations.wrote(key, pod)

            done, error = await slow_start(diff.create, create)
            if error is not None:
                if isinstance(error, errors.ForbiddenError) and "being terminated" in str(error):
                    return None   # the namespace is going away: nothing to report
                log.warning("%s %s: created %d of %d pods: %s", self.kind.kind, key, done, diff.create, error)
                self.events.record(rs, "Warning", "FailedCreate", f"Error creating: {error}", causation=causation)
                return str(error)
        elif diff.delete:
            async def delete(pod: Obj) -> None:
                try:
                    deleted = await self.client.delete("pods", pod["metadata"]["name"],
                                                       namespace=pod["metadata"].get("namespace"), causation=causation)
                except errors.NotFoundError:
                    return
                self.expectations.wrote(key, deleted)

            results = await asyncio.gather(*(delete(p) for p in diff.delete), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                log.warning("%s %s: deleting pods: %s", self.kind.kind, key, failures[0])
                self.events.record(rs, "Warning", "FailedDelete", f"Error deleting: {failures[0]}",
                                   causation=causation)
                return str(failures[0])
        return None


def build(ctx: ControllerContext) -> list[Controller]:
    return [ReplicaSetController(ctx, REPLICASET).controller]


def build_replicationcontroller(ctx: ControllerContext) -> list[Controller]:
    return [ReplicaSetController(ctx, REPLICATION_CONTROLLER).controller]
