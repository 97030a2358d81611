"""The StatefulSet controller: pods with stable names, stable storage, and an order.

Fed by the statefulsets, pods, persistentvolumeclaims and controllerrevisions
informers (a pod's change wakes its StatefulSet); `decide` is a pure function
of (StatefulSet, its pods, the namespace's claims, its revisions, now) to a
`StsPlan`, which the thin loop `StatefulSetController` applies through the
client, every write carrying the causation of the event that woke the set.

As Kubernetes' statefulset controller: pods `<set>-<ordinal>` with
spec.hostname = the pod's name and spec.subdomain = serviceName, labels
statefulset.kubernetes.io/pod-name, apps.kubernetes.io/pod-index and
controller-revision-hash; each volumeClaimTemplate becomes a claim
`<template>-<set>-<ordinal>` made before its pod and never deleted with it
(persistentVolumeClaimRetentionPolicy: whenDeleted Delete makes the set the
claims' owner, whenScaled Delete makes a removed pod its claims' owner, so
the garbage collector removes them then); OrderedReady (ordinal N+1 is made
only when 0..N are Running and Ready, scale-down from the highest ordinal one
at a time) and Parallel; RollingUpdate from the highest ordinal down to the
partition, one pod at a time, each replaced only when the rest are ready;
OnDelete; revisions kept as ControllerRevisions (currentRevision,
updateRevision, revisionHistoryLimit); status replicas, readyReplicas,
currentReplicas, updatedReplicas, availableReplicas, observedGeneration.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventplane.objects import errors
from reconcilers.runner import Request

from . import _workload as w
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.statefulset")

Obj = dict[str, Any]

POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
REVISION = "controller-revision-hash"


@dataclass
class StsPlan:
    create_revision: Obj | None = None
    bump_revision: Obj | None = None
    delete_revisions: list[str] = field(default_factory=list)
    create_claims: list[Obj] = field(default_factory=list)
    claim_owners: dict[str, Obj] = field(default_factory=dict)   # claim name → ownerReference to add
    create_pods: list[Obj] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    status: Obj | None = None
    requeue_after: float | None = None


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(w.meta(sts).get("name") or "") + r"-(\d+)", w.meta(pod).get("name") or "")
    return int(m.group(1)) if m else None


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    return f"{w.meta(template).get('name')}-{w.meta(sts).get('name')}-{ordinal}"


def _healthy(pod: Obj, min_ready: int = 0, at: datetime | None = None) -> bool:
    """Running and available (Ready for minReadySeconds), and not going away: what ordering waits for."""
    if w.deleting(pod):
        return False
    return w.ready(pod) if not min_ready or at is None else w.available(pod, min_ready, at)


def new_claim(sts: Obj, template: Obj, ordinal: int) -> Obj:
    spec = sts.get("spec") or {}
    tm = w.meta(template)
    labels = {**(tm.get("labels") or {}), **((spec.get("selector") or {}).get("matchLabels") or {})}
    md: Obj = {"name": claim_name(template, sts, ordinal), "namespace": w.meta(sts).get("namespace"),
               "labels": labels}
    if tm.get("annotations"):
        md["annotations"] = dict(tm["annotations"])
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    if policy.get("whenDeleted") == "Delete":
        md["ownerReferences"] = [w.owner_reference(sts, api_version="apps/v1", kind="StatefulSet")]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
            "spec": dict(template.get("spec") or {})}


def new_sts_pod(sts: Obj, ordinal: int, revision: Obj) -> Obj:
    spec = sts.get("spec") or {}
    sm = w.meta(sts)
    name = f"{sm.get('name')}-{ordinal}"
    pod = w.new_pod(w.template_of(revision), namespace=sm.get("namespace") or "default",
                    owner_ref=w.owner_reference(sts, api_version="apps/v1", kind="StatefulSet"), name=name,
                    labels={POD_NAME: name, POD_INDEX: str(ordinal), REVISION: w.meta(revision)["name"]})
    pspec = pod["spec"]
    pspec["hostname"] = name
    if spec.get("serviceName"):
        pspec["subdomain"] = spec["serviceName"]
    templates = spec.get("volumeClaimTemplates") or []
    if templates:
        claimed = {w.meta(t).get("name") for t in templates}
        volumes = [v for v in pspec.get("volumes") or [] if v.get("name") not in claimed]
        volumes += [{"name": w.meta(t)["name"], "persistentVolumeClaim": {"claimName": claim_name(t, sts, ordinal)}}
                    for t in templates]
        pspec["volumes"] = volumes
    return pod


def decide(sts: Obj, pods: list[Obj], claims: dict[str, Obj], revisions: list[Obj], at: datetime) -> StsPlan:
    plan = StsPlan()
    spec = sts.get("spec") or {}
    old = sts.get("status") or {}
    sm = w.meta(sts)
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else replicas
    start = ((spec.get("ordinals") or {}).get("start")) or 0
    parallel = spec.get("podManagementPolicy") == "Parallel"
    strategy = spec.get("updateStrategy") or {}
    rolling = (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
    partition = ((strategy.get("rollingUpdate") or {}).get("partition")) or 0
    templates = spec.get("volumeClaimTemplates") or []
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    min_ready = spec.get("minReadySeconds") or 0

    def healthy(pod: Obj) -> bool:
        return _healthy(pod, min_ready, at)

    # Revisions: the template now (update) and the one the set last completed (current).
    revisions = [r for r in revisions if w.controlled_by(r, sts)]
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    update, plan.create_revision, plan.bump_revision = w.pick_revisions(
        sts, revisions, spec.get("template"), api_version="apps/v1", kind="StatefulSet", labels=match_labels)
    update_name = w.meta(update)["name"]
    by_name = {w.meta(r)["name"]: r for r in revisions}
    current = by_name.get(old.get("currentRevision") or "") or update
    current_name = w.meta(current)["name"]

    def revision_for(ordinal: int) -> Obj:
        return current if rolling and ordinal - start < partition else update

    pods = [p for p in pods if w.controlled_by(p, sts) and ordinal_of(sts, p) is not None]
    by_ordinal = {ordinal_of(sts, p): p for p in pods}
    wanted = range(start, start + replicas)
    condemned = sorted((o for o in by_ordinal if o not in wanted), reverse=True)

    def ensure_claims(ordinal: int) -> None:
        for t in templates:
            name = claim_name(t, sts, ordinal)
            if name not in claims and all(w.meta(c)["name"] != name for c in plan.create_claims):
                plan.create_claims.append(new_claim(sts, t, ordinal))

    # Scale up and repair, in ordinal order; OrderedReady stops at the first pod not Running and Ready.
    blocked = False
    for o in wanted:
        pod = by_ordinal.get(o)
        if pod is None:
            ensure_claims(o)
            plan.create_pods.append(new_sts_pod(sts, o, revision_for(o)))
            if not parallel:
                blocked = True
                break
            continue
        if w.terminated(pod) and not w.deleting(pod):
            plan.delete_pods.append(w.meta(pod)["name"])   # failed or exited: made again, same name
            if not parallel:
                blocked = True
                break
            continue
        ensure_claims(o)
        if not healthy(pod) and not parallel:
            blocked = True
            break

    # Scale down from the highest ordinal; OrderedReady one at a time, only when the rest are ready.
    unhealthy = any(not healthy(by_ordinal[o]) for o in wanted if o in by_ordinal) or \
        any(o not in by_ordinal for o in wanted)
    for o in condemned:
        pod = by_ordinal[o]
        if w.deleting(pod):
            if not parallel:
                blocked = True
                break
            continue
        if not parallel and (blocked or unhealthy):
            blocked = True
            break
        plan.delete_pods.append(w.meta(pod)["name"])
        if retention.get("whenScaled") == "Delete":
            ref = {"apiVersion": "v1", "kind": "Pod", "name": w.meta(pod)["name"], "uid": w.meta(pod).get("uid")}
            for t in templates:
                if claim_name(t, sts, o) in claims:
                    plan.claim_owners[claim_name(t, sts, o)] = ref
        if not parallel:
            blocked = True
            break

    # Rolling update: highest ordinal first, down to the partition, one pod at a time.
    if rolling and not blocked and not condemned and not plan.create_pods and not plan.delete_pods:
        for o in sorted(wanted, reverse=True):
            if o - start < partition:
                break
            pod = by_ordinal.get(o)
            if pod is None or w.deleting(pod):
                break
            if (w.meta(pod).get("labels") or {}).get(REVISION) != update_name:
                plan.delete_pods.append(w.meta(pod)["name"])
                break
            if not healthy(pod):
                break

    # Status.
    live = [p for p in pods if not w.terminated(p)]
    in_set = [p for p in live if ordinal_of(sts, p) in wanted] + plan.create_pods
    labels_of = [(w.meta(p).get("labels") or {}).get(REVISION) for p in in_set]
    status: Obj = dict(old)
    status.update(
        observedGeneration=sm.get("generation"), replicas=len(live) + len(plan.create_pods),
        readyReplicas=sum(1 for p in live if w.ready(p)),
        availableReplicas=sum(1 for p in live if w.available(p, spec.get("minReadySeconds") or 0, at)),
        currentReplicas=sum(1 for r in labels_of if r == current_name),
        updatedReplicas=sum(1 for r in labels_of if r == update_name),
        currentRevision=current_name, updateRevision=update_name, collisionCount=old.get("collisionCount") or 0)
    done = (status["updatedReplicas"] == replicas and status["readyReplicas"] == replicas
            and status["replicas"] == replicas)
    if done or current_name == update_name:   # the update is complete: it becomes the current revision
        status["currentRevision"] = update_name
        status["currentReplicas"] = status["updatedReplicas"]
    if status != old:
        plan.status = status
    if min_ready > 0 and status["availableReplicas"] < status["readyReplicas"]:
        plan.requeue_after = 1.0   # a ready pod becomes available by the clock alone: no event will say so

    # History beyond revisionHistoryLimit: the oldest revisions no pod uses.
    limit = spec.get("revisionHistoryLimit")
    limit = 10 if limit is None else limit
    used = {(w.meta(p).get("labels") or {}).get(REVISION) for p in pods} | {status["currentRevision"], update_name}
    spare = sorted((r for r in revisions if w.meta(r)["name"] not in used), key=lambda r: r.get("revision") or 0)
    plan.delete_revisions = [w.meta(r)["name"] for r in spare[:max(0, len(spare) - limit)]]
    return plan


class StatefulSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.sets = ctx.informers.informer("statefulsets")
        self.pods = ctx.informers.informer("pods")
        self.claims = ctx.informers.informer("persistentvolumeclaims")
        self.revisions = ctx.informers.informer("controllerrevisions")
        self.clock = ctx.options.get("clock") or w.now
        self.barrier = w.ReadBarrier()
        self.events = w.EventRecorder(ctx.client, component="statefulset-controller", instance=ctx.identity,
                                      enabled=bool(ctx.options.get("events", True)))
        self.controller = w.WorkloadController("statefulset", self.sets, self.reconcile,
                                               secondary=[self.pods, self.claims, self.revisions])
        self.controller.watch_owned(self.pods, "StatefulSet")
        self.controller.watch_owned(self.revisions, "StatefulSet")

    async def reconcile(self, req: Request) -> None:
        key = req.key
        if not self.barrier.passed(key):
            self.controller.queue.add_after(key, 0.05)
            return
        sts = self.sets.store.get(key)
        if sts is None or w.deleting(sts):
            return
        uid = w.meta(sts)["uid"]
        pods = await w.claim_pods(self.client, sts, self.pods.store.by_index("namespace", req.namespace),
                                  api_version="apps/v1", kind="StatefulSet", causation=req.causation,
                                  barrier=self.barrier, key=key, informer=self.pods)
        claims = {w.meta(c)["name"]: c for c in self.claims.store.by_index("namespace", req.namespace)}
        revisions = self.revisions.store.by_index("owner", uid)
        plan = decide(sts, pods, claims, revisions, self.clock())
        await self.apply(key, req, sts, plan)

    async def apply(self, key: str, req: Request, sts: Obj, plan: StsPlan) -> None:
        c, ns, cause = self.client, req.namespace, req.causation
        if plan.create_revision is not None:
            self.barrier.wrote(key, self.revisions, await w.create_or_adopt_revision(c, plan.create_revision,
                                                                                     causation=cause))
        if plan.bump_revision is not None:
            self.barrier.wrote(key, self.revisions, await c.update(plan.bump_revision, namespace=ns, causation=cause))
        set_name = w.meta(sts)["name"]
        for claim in plan.create_claims:
            try:
                self.barrier.wrote(key, self.claims, await c.create(claim, namespace=ns, causation=cause))
                pod_name = set_name + "-" + w.meta(claim)["name"].rsplit("-", 1)[-1]
                self.events.record(sts, "Normal", "SuccessfulCreate", f"create Claim {w.meta(claim)['name']} Pod "
                                   f"{pod_name} in StatefulSet {set_name} success", causation=cause)
            except errors.AlreadyExistsError:
                pass
        for name, ref in plan.claim_owners.items():
            claim = self.claims.store.get(f"{ns}/{name}")
            refs = [r for r in (w.meta(claim or {}).get("ownerReferences") or []) if r.get("uid") != ref["uid"]]
            out = await c.patch("persistentvolumeclaims", name, {"metadata": {"ownerReferences": [*refs, ref]}},
                                namespace=ns, causation=cause)
            self.barrier.wrote(key, self.claims, out)
        for name in plan.delete_pods:
            try:
                self.barrier.wrote(key, self.pods, await c.delete("pods", name, namespace=ns, causation=cause))
                self.events.record(sts, "Normal", "SuccessfulDelete",
                                   f"delete Pod {name} in StatefulSet {set_name} successful", causation=cause)
            except errors.NotFoundError:
                pass
        for pod in plan.create_pods:
            try:
                self.barrier.wrote(key, self.pods, await c.create(pod, namespace=ns, causation=cause))
                self.events.record(sts, "Normal", "SuccessfulCreate", f"create Pod {w.meta(pod)['name']} in "
                                   f"StatefulSet {set_name} successful", causation=cause)
            except errors.AlreadyExistsError:
                pass   # the old pod of that name is still going away; its deletion wakes us again
        if plan.status is not None:
            self.barrier.wrote(key, self.sets, await c.update({**sts, "status": plan.status}, subresource="status",
                                                              causation=cause))
        for name in plan.delete_revisions:
            try:
                await c.delete("controllerrevisions", name, namespace=ns, causation=cause)
            except errors.NotFoundError:
                pass
        if plan.requeue_after is not None:
            self.controller.queue.add_after(key, plan.requeue_after)


def build(ctx: ControllerContext) -> list:
    return [StatefulSetController(ctx).controller]
