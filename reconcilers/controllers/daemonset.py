"""The DaemonSet controller: one pod on every eligible node, following nodes as they come and go.

Fed by the daemonsets, pods, nodes and controllerrevisions informers (a pod's
change wakes its DaemonSet; a node's change wakes every DaemonSet); `decide` is
a pure function of (DaemonSet, nodes, its pods, its revisions, now) to a
`DsPlan`, applied by the thin loop `DaemonSetController` with the causation of
the event that woke it.

As Kubernetes' daemon controller: a node is eligible when the pod template's
nodeSelector and required node affinity match it and its NoSchedule and
NoExecute taints are tolerated — with the tolerations Kubernetes adds to every
daemon pod (not-ready and unreachable NoExecute; disk-, memory-, pid-pressure
and unschedulable NoSchedule; network-unavailable with hostNetwork). A node
whose only untolerated taints are NoSchedule keeps the pod it has but gets no
new one. Each pod is pinned to its node with a required node affinity on
matchFields metadata.name (so the default scheduler binds it there). Extra
pods on a node, failed pods and pods on nodes that are gone are deleted.
RollingUpdate honours maxUnavailable and maxSurge (ints or percentages of the
desired count), OnDelete replaces only pods deleted by someone else. Revisions
are ControllerRevisions; pods carry controller-revision-hash (the hash) and
pod-template-generation. Status: desired/current/updated NumberScheduled,
numberReady, numberAvailable, numberUnavailable, numberMisscheduled.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventplane.objects import errors
from reconcilers.runner import Request
from reconcilers.scheduler.filters import node_affinity_matches, tolerates
from reconcilers.scheduler.resources import NodeInfo

from . import _workload as w
from .podcontrol import slow_start
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.daemonset")

Obj = dict[str, Any]

REVISION = "controller-revision-hash"
GENERATION = "pod-template-generation"
DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


@dataclass
class DsPlan:
    create_revision: Obj | None = None
    bump_revision: Obj | None = None
    delete_revisions: list[str] = field(default_factory=list)
    create: list[Obj] = field(default_factory=list)   # pod manifests, one per node
    delete: list[str] = field(default_factory=list)   # pod names
    status: Obj | None = None
    requeue_after: float | None = None
    failed_on: list[str] = field(default_factory=list)   # nodes whose failed pod is replaced now


FAILED_BACKOFF_BASE, FAILED_BACKOFF_CAP = 1.0, 900.0   # seconds: Kubernetes' failedPodsBackoff


def with_default_tolerations(template: Obj | None) -> Obj:
    """The pod template plus the tolerations Kubernetes adds to daemon pods (AddOrUpdateDaemonPodTolerations)."""
    tpl = copy.deepcopy(template or {})
    spec = tpl.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    extra = DEFAULT_TOLERATIONS + ([NETWORK_UNAVAILABLE] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tolerations):
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    return tpl


def placement(template: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run, should continue running): NodeShouldRunDaemonPod."""
    pod = {"spec": template.get("spec") or {}}
    if not node_affinity_matches(pod, NodeInfo(node=node)):
        return False, False
    tolerations = pod["spec"].get("tolerations") or []
    run = keep = True
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if any(tolerates(t, taint) for t in tolerations):
            continue
        run = False
        if taint.get("effect") == "NoExecute":
            keep = False
    return run, keep


def pinned_to(pod: Obj) -> str | None:
    """The node a daemon pod is for: its nodeName, or the node its matchFields affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def new_daemon_pod(ds: Obj, template: Obj, node_name: str, hash_: str) -> Obj:
    dm = w.meta(ds)
    labels = {REVISION: hash_}
    if dm.get("generation") is not None:
        labels[GENERATION] = str(dm["generation"])
    pod = w.new_pod(template, namespace=dm.get("namespace") or "default",
                    owner_ref=w.owner_reference(ds, api_version="apps/v1", kind="DaemonSet"),
                    generate_name=f"{dm.get('name')}-", labels=labels)
    affinity = pod["spec"].setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    return pod


def scaled(value: Any, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(value or 0)


def decide(ds: Obj, nodes: list[Obj], pods: list[Obj], revisions: list[Obj], at: datetime, *,
           backoff: dict[str, datetime] | None = None) -> DsPlan:
    """`backoff`: node → the time before which a failed pod there is not replaced (failedPodsBackoff)."""
    plan = DsPlan()
    backoff = backoff or {}
    spec = ds.get("spec") or {}
    old = ds.get("status") or {}
    template = with_default_tolerations(spec.get("template"))
    min_ready = spec.get("minReadySeconds") or 0

    revisions = [r for r in revisions if w.controlled_by(r, ds)]
    update, plan.create_revision, plan.bump_revision = w.pick_revisions(
        ds, revisions, spec.get("template"), api_version="apps/v1", kind="DaemonSet",
        labels=(spec.get("selector") or {}).get("matchLabels") or {})
    hash_ = (w.meta(update).get("labels") or {}).get("controller.kubernetes.io/hash") or ""
    current_template = with_default_tolerations(w.template_of(update))

    pods = [p for p in pods if w.controlled_by(p, ds)]
    by_node: dict[str, list[Obj]] = {}
    for p in pods:
        by_node.setdefault(pinned_to(p) or "", []).append(p)
    known = {w.meta(n)["name"] for n in nodes}

    def is_new(p: Obj) -> bool:
        return (w.meta(p).get("labels") or {}).get(REVISION) == hash_

    desired = 0
    misscheduled = 0
    wanted_nodes: list[str] = []
    kept: dict[str, list[Obj]] = {}            # node → live pods kept there, oldest first
    for node in sorted(nodes, key=lambda n: w.meta(n)["name"]):
        name = w.meta(node)["name"]
        run, keep = placement(template, node)
        live = [p for p in by_node.get(name, []) if not w.deleting(p)]
        failed = [p for p in live if w.phase(p) == "Failed"]
        until = backoff.get(name)
        if failed and until is not None and at < until:
            # a pod failing at once again and again is replaced after 1 s, 2 s, 4 s … (up to 15 minutes)
            wait = (until - at).total_seconds()
            plan.requeue_after = wait if plan.requeue_after is None else min(plan.requeue_after, wait)
            if run:
                desired += 1
                wanted_nodes.append(name)
            continue
        plan.delete += [w.meta(p)["name"] for p in failed]
        plan.failed_on += [name] if failed else []
        live = [p for p in live if w.phase(p) != "Failed"]
        if run:
            desired += 1
            wanted_nodes.append(name)
        if not keep or (not run and not live):
            plan.delete += [w.meta(p)["name"] for p in live]
            if live:
                misscheduled += 1
            continue
        if not run and live:
            misscheduled += 1   # NoSchedule taint added later: the pod stays, but it should not be there
        if not live:
            if run and not any(w.deleting(p) for p in by_node.get(name, [])):   # wait for one going away
                plan.create.append(new_daemon_pod(ds, current_template, name, hash_))
            continue
        # several pods on one node: keep the oldest (a new one and an old one while surging is fine)
        oldest_first = list(reversed(w.newest_first(live)))
        if len(oldest_first) > 1:
            newest_new = [p for p in oldest_first if is_new(p)]
            olds = [p for p in oldest_first if not is_new(p)]
            keep_list = (newest_new[:1] + olds[:1]) if newest_new and olds else oldest_first[:1]
            plan.delete += [w.meta(p)["name"] for p in oldest_first if p not in keep_list]
            oldest_first = keep_list
        kept[name] = oldest_first
    for node_name, ps in by_node.items():   # pods for nodes that do not exist (any more)
        if node_name not in known:
            plan.delete += [w.meta(p)["name"] for p in ps if not w.deleting(p)]

    # Rolling update.
    strategy = spec.get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        max_surge = scaled(ru.get("maxSurge", 0), desired, round_up=True)
        max_unavailable = scaled(ru.get("maxUnavailable", 1), desired, round_up=True)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1

        def avail(p: Obj) -> bool:
            return w.available(p, min_ready, at)

        # Nodes without an available pod count as unavailable already.
        unavailable = sum(1 for n in wanted_nodes if not any(avail(p) for p in kept.get(n, [])))
        surging = 0
        for n in wanted_nodes:
            ps = kept.get(n, [])
            old_pods = [p for p in ps if not is_new(p)]
            new_pods = [p for p in ps if is_new(p)]
            if not old_pods:
                continue
            if new_pods:
                surging += 1
                if all(avail(p) for p in new_pods):   # the surge pod is up: the old one goes
                    plan.delete += [w.meta(p)["name"] for p in old_pods]
                continue
            if not any(avail(p) for p in old_pods):   # already unavailable: replace at once
                plan.delete += [w.meta(p)["name"] for p in old_pods]
                continue
        for n in wanted_nodes:
            ps = kept.get(n, [])
            old_pods = [p for p in ps if not is_new(p)]
            if not old_pods or any(is_new(p) for p in ps) or not any(avail(p) for p in old_pods):
                continue
            if max_surge > 0:
                if surging < max_surge:
                    plan.create.append(new_daemon_pod(ds, current_template, n, hash_))
                    surging += 1
            elif unavailable < max_unavailable:
                plan.delete += [w.meta(p)["name"] for p in old_pods]
                unavailable += 1

    # Status.
    def on(n: str) -> list[Obj]:
        return [p for p in by_node.get(n, []) if not w.deleting(p) and w.phase(p) != "Failed"]
    current = sum(1 for n in wanted_nodes if on(n))
    ready = sum(1 for n in wanted_nodes if any(w.ready(p) for p in on(n)))
    available = sum(1 for n in wanted_nodes if any(w.available(p, min_ready, at) for p in on(n)))
    updated = sum(1 for n in wanted_nodes if any(is_new(p) for p in on(n)))
    status = dict(old)
    status.update(desiredNumberScheduled=desired, currentNumberScheduled=current, numberMisscheduled=misscheduled,
                  numberReady=ready, numberAvailable=available, numberUnavailable=desired - available,
                  updatedNumberScheduled=updated, observedGeneration=w.meta(ds).get("generation"))
    for k in ("numberAvailable", "numberUnavailable"):
        if not status[k]:
            status.pop(k)
    if status != old:
        plan.status = status
    if min_ready > 0 and available < ready:
        plan.requeue_after = 1.0 if plan.requeue_after is None else min(plan.requeue_after, 1.0)

    limit = spec.get("revisionHistoryLimit")
    limit = 10 if limit is None else limit
    used = {(w.meta(p).get("labels") or {}).get(REVISION) for p in pods} | {hash_}
    spare = sorted((r for r in revisions if (w.meta(r).get("labels") or {}).get("controller.kubernetes.io/hash")
                    not in used), key=lambda r: r.get("revision") or 0)
    plan.delete_revisions = [w.meta(r)["name"] for r in spare[:max(0, len(spare) - limit)]]
    plan.delete = list(dict.fromkeys(plan.delete))
    return plan


class DaemonSetController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.sets = ctx.informers.informer("daemonsets")
        self.pods = ctx.informers.informer("pods")
        self.nodes = ctx.informers.informer("nodes")
        self.revisions = ctx.informers.informer("controllerrevisions")
        self.clock = ctx.options.get("clock") or w.now
        self.barrier = w.ReadBarrier()
        self.failures: dict[tuple[str, str], tuple[int, datetime]] = {}   # (set, node) → (count, not before)
        self.events = w.EventRecorder(ctx.client, component="daemonset-controller", instance=ctx.identity,
                                      enabled=bool(ctx.options.get("events", True)))
        self.controller = w.WorkloadController("daemonset", self.sets, self.reconcile,
                                               secondary=[self.pods, self.nodes, self.revisions])
        self.controller.watch_owned(self.pods, "DaemonSet")
        self.controller.watch_owned(self.revisions, "DaemonSet")
        every = lambda *_: [self.controller.queue.add(k) for k in self.sets.store.keys()]  # noqa: E731
        self.nodes.add_handler(on_add=every, on_update=lambda old, new: every() if _node_changed(old, new) else None,
                               on_delete=every)

    async def reconcile(self, req: Request) -> None:
        key = req.key
        if not self.barrier.passed(key):
            self.controller.queue.add_after(key, 0.05)
            return
        ds = self.sets.store.get(key)
        if ds is None or w.deleting(ds):
            return
        uid = w.meta(ds)["uid"]
        pods = await w.claim_pods(self.client, ds, self.pods.store.by_index("namespace", req.namespace),
                                  api_version="apps/v1", kind="DaemonSet", causation=req.causation,
                                  barrier=self.barrier, key=key, informer=self.pods)
        at = self.clock()
        backoff = {node: until for (k, node), (_, until) in self.failures.items() if k == key}
        plan = decide(ds, self.nodes.store.list(), pods, self.revisions.store.by_index("owner", uid), at,
                      backoff=backoff)
        for node in plan.failed_on:
            count = self.failures.get((key, node), (0, at))[0] + 1
            delay = min(FAILED_BACKOFF_BASE * 2 ** (count - 1), FAILED_BACKOFF_CAP)
            self.failures[(key, node)] = (count, at + timedelta(seconds=delay))
        c, ns, cause = self.client, req.namespace, req.causation
        if plan.create_revision is not None:
            self.barrier.wrote(key, self.revisions, await w.create_or_adopt_revision(c, plan.create_revision,
                                                                                     causation=cause))
        if plan.bump_revision is not None:
            self.barrier.wrote(key, self.revisions, await c.update(plan.bump_revision, namespace=ns, causation=cause))
        for name in plan.delete:
            try:
                self.barrier.wrote(key, self.pods, await c.delete("pods", name, namespace=ns, causation=cause))
                self.events.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", causation=cause)
            except errors.NotFoundError:
                pass
        if plan.create:
            pending = iter(plan.create)

            async def create_one() -> None:
                out = await c.create(next(pending), namespace=ns, causation=cause)
                self.barrier.wrote(key, self.pods, out)
                self.events.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {w.meta(out)['name']}",
                                   causation=cause)
            _, failure = await slow_start(len(plan.create), create_one)   # 1, 2, 4 … at once
            if failure is not None:
                raise failure
        if plan.status is not None:
            self.barrier.wrote(key, self.sets, await c.update({**ds, "status": plan.status}, subresource="status",
                                                              causation=cause))
        for name in plan.delete_revisions:
            try:
                await c.delete("controllerrevisions", name, namespace=ns, causation=cause)
            except errors.NotFoundError:
                pass
        if plan.requeue_after is not None:
            self.controller.queue.add_after(key, plan.requeue_after)


def _node_changed(old: Obj, new: Obj) -> bool:
    """Only what decides placement: labels, taints, unschedulable (not heartbeats or status)."""
    return (w.meta(old).get("labels") != w.meta(new).get("labels")
            or (old.get("spec") or {}) != (new.get("spec") or {}))


def build(ctx: ControllerContext) -> list:
    return [DaemonSetController(ctx).controller]
