"""The scheduler as a running component: informers → queue → pipeline → binding, Events, preemption.

Fed by informers (through eventplane.client only): every pod — pending pods
whose spec.schedulerName is this scheduler's go to the SchedulingQueue, bound
pods to the NodeCache — plus nodes, PriorityClasses, PodDisruptionBudgets,
namespaces (their labels, for namespaceSelector), PersistentVolumeClaims,
PersistentVolumes and StorageClasses (the volume filters); and, once at start,
the pod events of the last AVOID_SECONDS replayed from the log (a watch from
that position), so that a restarted scheduler (or a new leader) still avoids
the nodes where a controller's pods recently failed to start.
Consumes the pure pipeline (batch.place over pipeline.schedule) and writes
through the API:

- the annotation volume.kubernetes.io/selected-node on each unbound
  WaitForFirstConsumer claim of a placed pod, before its binding (kube's
  PreBind), so the provisioner makes the volume on that node;
- `pods/binding` for each placed pod, with causation = the position of the
  pod's event that the decision read (DESIGN invariant 10). The pod is assumed
  in the cache at decision time, and bindings run concurrently (bounded), so
  the next decisions never wait for the API;
- a core/v1 Event per outcome: `Scheduled` ("Successfully assigned ns/pod to
  node") or `FailedScheduling` (kube-scheduler's "0/N nodes are available: …"),
  carrying the decision's compact record (record.py) in its annotation
  RECORD_ANNOTATION — what `epctl explain-schedule` prints, from the log;
- for preemption: `status.nominatedNodeName` of the preemptor, a
  DisruptionTarget condition on each victim, then `pods/eviction` (or a
  graceful delete where a PodDisruptionBudget would refuse the eviction and no
  better node exists), and a `Preempted` Event on each victim.

Priority: the API sets spec.priority to 0 for pods without priorityClassName
but does not resolve class names, so the scheduler does, from the
PriorityClass informer (a missing class counts as the global default's value,
else 0).

`run_scheduler(client, identity=…)` runs it under leader election until
cancelled; `Scheduler(client, …).run()` runs it without.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from eventplane.client import Client
from eventplane.client.coalesce import Coalescer
from eventplane.objects import errors
from reconcilers.informer import SharedInformerFactory, causation_of
from reconcilers.leaderelection import LeaderElector

from . import preemption
from . import volumes as vol
from .batch import ClassStates, Placement, place
from .cache import NodeCache
from .explain import fit_error
from .filters import DEFAULT_FILTERS
from .pipeline import Cache, Options
from .queue import ANY, QueuedPod, SchedulingQueue
from .record import RECORD_ANNOTATION, dumps
from .resources import Obj, pod_key
from .scorers import DEFAULT_PROFILE, Profile, controller_uid

log = logging.getLogger("eventplane.scheduler")

DEFAULT_SCHEDULER_NAME = "default-scheduler"
BATCH = 128           # pods decided per pass at most (a pass holds the event loop: bindings and informers wait)
PASS_SECONDS = 0.05   # what a pass should take: its size follows the time per pod of the passes before
MIN_PASS = 8          # pods per pass at least (a class's pods share its state's upkeep)
# Full garbage collections after this many of the middle generation (CPython's default: 10). Each one walks
# every object (the informers hold every pod and node: a million objects at 10,000 pods, a few hundred
# ms) while the event loop waits; measured at 1,000 nodes they took a third of the process's CPU.
GC_FULL_EVERY = 100
BINDERS = 128         # bindings in flight at once, sent together (coalesce.py) as a pass places them
EVENT_WRITERS = 4     # requests of Events in flight, each carrying every Event waiting (up to EVENT_BATCH)
EVENT_BATCH = 256
PRUNE_AT = 200_000    # memo entries before stale generations are dropped
AVOID_SECONDS = 300.0  # how long a controller's pods avoid a node where one of them failed to start
# Container states that mean "could not start here" (the kubelet's reasons).
START_FAILURES = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                            "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
                            "RunContainerError"})

# Which filters an event may satisfy (kube's queueing hints): a pod rejected only by others stays put.
RESOURCES_FREED = ("NodeResourcesFit", "NodePorts", "InterPodAffinity", "PodTopologySpread",
                   "VolumeRestrictions", "VolumeBinding")
POD_ADDED = ("InterPodAffinity", "PodTopologySpread")
VOLUME_HELPS = ("VolumeRestrictions", "VolumeBinding", "VolumeZone")   # a claim, volume or class changed
NAMESPACE_HELPS = ("InterPodAffinity",)                                  # a namespace's labels changed
REPLAY_IDLE = 0.5      # seconds without a replayed event after which the replay of recent failures ends
REPLAY_TIMEOUT = 10.0  # the most the start waits for that replay
NODE_CHANGE_HELPS = {
    "labels": ("NodeAffinity", "InterPodAffinity", "PodTopologySpread", "VolumeBinding", "VolumeZone"),
    "taints": ("TaintToleration",),
    "unschedulable": ("NodeUnschedulable",),
    "allocatable": ("NodeResourcesFit",),
    "images": (),
}


def fewer_full_collections(every: int = GC_FULL_EVERY) -> None:
    """Make full collections rarer in this process (never more frequent than they are): the two younger
    generations still collect short-lived cycles as often as before."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen2 < every:
        gc.set_threshold(gen0, gen1, every)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def failed_to_start(pod: Obj) -> bool:
    """Did this bound pod fail on its node: phase Failed, or a container stuck in a start failure?"""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return True
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in START_FAILURES:
            return True
    return False


@dataclass
class Stats:
    """What the loop did, for `bench/scheduler.py` and the log."""

    decided: int = 0
    bound: int = 0
    failed: int = 0
    bind_errors: int = 0
    preemptions: int = 0
    decide_seconds: float = 0.0        # inside place(): the pipeline's own time (wall clock)
    decide_cpu_seconds: float = 0.0    # the same in CPU time (on a shared machine, without waiting for a core)
    queue_waits: list[float] = field(default_factory=list)   # seconds from becoming active to popped
    bound_at: dict[str, float] = field(default_factory=dict)  # key -> monotonic time the binding returned


class Scheduler:
    def __init__(self, client: Client, *, name: str = DEFAULT_SCHEDULER_NAME, identity: str = "",
                 profile: Profile = DEFAULT_PROFILE, options: Options = Options(), preemption_enabled: bool = True,
                 events: bool = True, batch: int = BATCH, binders: int = BINDERS,
                 informers: SharedInformerFactory | None = None, keep_stats: bool = False) -> None:
        self.client = client
        self.name = name
        self.identity = identity or name
        self.profile = profile
        self.options = options
        self.preemption_enabled = preemption_enabled
        self.events_enabled = events
        self.batch = batch
        self.pass_size = batch   # adapted after every pass (PASS_SECONDS)
        self.keep_stats = keep_stats
        self.informers = informers or SharedInformerFactory(client)
        self.pods = self.informers.informer("pods")
        self.nodes = self.informers.informer("nodes")
        self.priority_classes = self.informers.informer("priorityclasses.scheduling.k8s.io")
        self.pdbs = self.informers.informer("poddisruptionbudgets.policy")
        self.namespaces = self.informers.informer("namespaces")
        self.claims = self.informers.informer("persistentvolumeclaims")
        self.pvs = self.informers.informer("persistentvolumes")
        self.storage_classes = self.informers.informer("storageclasses.storage.k8s.io")
        self.queue = SchedulingQueue(priority_of=self.priority_of)
        self.cache = NodeCache()
        self.memo = Cache()
        self.class_states = ClassStates(self.cache)
        self.start = 0
        self.stats = Stats()
        self._binders = asyncio.Semaphore(binders)
        # The bindings of a pass go to the API together: one request over NATS, one share of a group commit.
        self._bindings = Coalescer(client, "pods", subresource="binding", max_batch=binders)
        self._tasks: set[asyncio.Task] = set()
        self._events: asyncio.Queue[tuple[dict, int | None]] = asyncio.Queue()
        self._handlers_added = False
        self.failures: dict[str, dict[str, float]] = {}   # controller uid -> node -> avoid until (monotonic)
        self.pods_resource: Any = "pods"   # resolved once at start: names cost a catalog lookup per call

    # --- priorities ---

    def priority_of(self, pod: Obj) -> int:
        spec = pod.get("spec") or {}
        name = spec.get("priorityClassName")
        if name:
            pc = self.priority_classes.store.get(name)
            if pc is not None:
                return int(pc.get("value") or 0)
        if spec.get("priority") is not None:
            return int(spec["priority"])
        for pc in self.priority_classes.store.list():
            if pc.get("globalDefault"):
                return int(pc.get("value") or 0)
        return 0

    def _with_priority(self, pod: Obj) -> Obj:
        """The pod as the pipeline should see it: spec.priority resolved from its class."""
        priority = self.priority_of(pod)
        if (pod.get("spec") or {}).get("priority") == priority:
            return pod
        return {**pod, "spec": {**(pod.get("spec") or {}), "priority": priority}}

    # --- informer handlers ---

    def _ours(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.name

    def _pending(self, pod: Obj) -> bool:
        return (not (pod.get("spec") or {}).get("nodeName") and not _meta(pod).get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))

    def _on_pod(self, pod: Obj, old: Obj | None = None) -> None:
        key = pod_key(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            self.queue.delete(key)
            if failed_to_start(pod):
                self._note_failure(pod)
            was_bound = old is not None and (old.get("spec") or {}).get("nodeName")
            terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            ours = self.cache.is_assumed(key)
            if self.cache.pod_bound(pod):
                if terminal:
                    self.queue.move(RESOURCES_FREED)
                elif not was_bound and not ours:
                    self.queue.move(POD_ADDED)
            return
        if not self._ours(pod):
            return
        if not self._pending(pod):
            self.queue.delete(key)
            return
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and key not in self.cache.where:
            self.cache.nominate(self._with_priority(pod), nominated)
        if self.cache.is_assumed(key):
            return   # placed already; its binding is in flight
        self.queue.add(key, pod)

    def _note_failure(self, pod: Obj, age: float = 0.0) -> None:
        """Pods of this pod's controller avoid its node for AVOID_SECONDS from the failure, `age` seconds ago."""
        uid = controller_uid(pod)
        if uid and age < AVOID_SECONDS:
            nodes = self.failures.setdefault(uid, {})
            node = pod["spec"]["nodeName"]
            nodes[node] = max(nodes.get(node, 0.0), time.monotonic() + AVOID_SECONDS - age)

    async def recall_failures(self) -> int:
        """Failed-node avoidance from the event log: the pod events of the last AVOID_SECONDS, replayed by
        a watch from the position of that moment, noted as they would have been live (deleted pods
        included). A failure's moment is the newest managedFields time of the pod's version, else now.
        Ends at the head of the log when the positions query was made, or after REPLAY_IDLE seconds
        without an event. Returns how many failed pod versions were seen."""
        try:
            pos = await self.client.query("positions", {"at": f"-{int(AVOID_SECONDS)}s"})
            start, head = int(pos["resourceVersion"]), int(pos["head"])
        except Exception as exc:   # an API without history, or unreachable: start without them
            log.info("%s: recent failures not read from the log: %s", self.name, exc)
            return 0
        if start >= head:
            return 0
        seen = 0
        # Position 0 (the window reaches before the log's first event) would mean "now" to a watch: start
        # after the first event instead, which is never a pod that failed on a node.
        watch = self.client.watch(self.pods_resource, all_namespaces=True, resource_version=str(max(start, 1)))
        try:
            while True:
                try:
                    kind, pod = await asyncio.wait_for(watch.__anext__(), REPLAY_IDLE)
                except (StopAsyncIteration, TimeoutError):
                    break
                if kind in ("ADDED", "MODIFIED") and (pod.get("spec") or {}).get("nodeName") \
                        and failed_to_start(pod):
                    self._note_failure(pod, age=_age(pod))
                    seen += 1
                if int(_meta(pod).get("resourceVersion") or 0) >= head:
                    break
        except Exception as exc:   # the window reaches before what the log keeps, or the API went away
            log.info("%s: recent failures not read from the log: %s", self.name, exc)
        finally:
            await watch.aclose()
        return seen

    def avoid(self) -> dict[str, frozenset[str]]:
        """Controller uid -> nodes its pods should avoid now; expired entries are dropped."""
        now = time.monotonic()
        out = {}
        for uid, nodes in list(self.failures.items()):
            live = {n for n, until in nodes.items() if until > now}
            if live:
                out[uid] = frozenset(live)
                self.failures[uid] = {n: nodes[n] for n in live}
            else:
                del self.failures[uid]
        return out

    def _on_pod_delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        if self.cache.remove(key):
            self.queue.move(RESOURCES_FREED)

    def _on_node(self, node: Obj, old: Obj | None = None) -> None:
        if old is None or node["metadata"]["name"] not in self.cache.nodes:
            self.cache.add_node(node)
            self.queue.move((ANY,))
            return
        changed = self.cache.update_node(node)
        helps = {f for c in changed for f in NODE_CHANGE_HELPS.get(c, ())}
        if helps:
            self.queue.move(helps)

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.delete_node(node["metadata"]["name"])

    def _on_namespace(self, ns: Obj, old: Obj | None = None) -> None:
        if self.cache.set_namespace(ns):
            self.queue.move(NAMESPACE_HELPS)

    def _on_volume_object(self, kind: str, obj: Obj, *, deleted: bool = False) -> None:
        meta = _meta(obj)
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}" if kind == "claims" else meta.get("name")
        self.cache.set_volume_object(kind, None if deleted else obj, key)
        self.queue.move(VOLUME_HELPS)

    def _on_priority_class(self, *_: Obj) -> None:
        """A class's value changed (or it appeared): waiting pods of that class take their new place."""
        for key, qp in list(self.queue.pods.items()):
            if self.priority_of(qp.pod) != qp.priority:
                self.queue.update(key, qp.pod)

    def _add_handlers(self) -> None:
        if self._handlers_added:
            return
        self._handlers_added = True
        self.nodes.add_handler(on_add=self._on_node, on_update=lambda o, n: self._on_node(n, o),
                               on_delete=self._on_node_delete)
        self.priority_classes.add_handler(on_add=self._on_priority_class, on_update=self._on_priority_class)
        self.pods.add_handler(on_add=self._on_pod, on_update=lambda o, n: self._on_pod(n, o),
                              on_delete=self._on_pod_delete)
        self.pdbs.add_handler(on_add=lambda *_: None)
        self.namespaces.add_handler(on_add=self._on_namespace, on_update=lambda o, n: self._on_namespace(n, o),
                                    on_delete=lambda ns: self.cache.delete_namespace(_meta(ns).get("name") or ""))
        for kind, informer in (("claims", self.claims), ("pvs", self.pvs), ("classes", self.storage_classes)):
            informer.add_handler(on_add=lambda o, k=kind: self._on_volume_object(k, o),
                                 on_update=lambda _, n, k=kind: self._on_volume_object(k, n),
                                 on_delete=lambda o, k=kind: self._on_volume_object(k, o, deleted=True))

    # --- running ---

    async def run(self, *, sync_timeout: float | None = 60.0) -> None:
        """Until cancelled. The informers are started here and stopped on the way out."""
        self._add_handlers()
        self.informers.start()
        writers = [asyncio.create_task(self._write_events(), name=f"scheduler-events-{i}")
                   for i in range(EVENT_WRITERS if self.events_enabled else 0)]
        recall: asyncio.Task | None = None
        try:
            self.pods_resource = await self.client.resolve("pods")
            recall = asyncio.create_task(asyncio.wait_for(self.recall_failures(), REPLAY_TIMEOUT),
                                         name="scheduler-recall-failures")
            await self.informers.wait_synced(sync_timeout)
            with contextlib.suppress(TimeoutError):
                await recall
            log.info("%s: synced %d nodes, %d pending pods", self.name, len(self.cache), len(self.queue))
            fewer_full_collections()
            while True:
                await self.queue.wait()
                self.schedule_once()
                await asyncio.sleep(0)   # let informer events and bindings in between passes
        finally:
            self.queue.close()
            background = [*writers, *self._tasks, *([recall] if recall is not None else [])]
            for t in background:
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.informers.stop()

    def schedule_once(self) -> int:
        """One pass: pop up to `batch` active pods, decide them together, assume and bind the placed ones."""
        popped = self.queue.pop_many(self.pass_size)
        if not popped:
            return 0
        started = time.perf_counter()
        now = time.monotonic()
        if self.keep_stats:
            self.stats.queue_waits.extend(now - qp.entered_active for qp in popped)
        pods = [self._with_priority(qp.pod) for qp in popped]
        keys = [qp.key for qp in popped]
        snapshot = self.cache.snapshot_for(keys)
        # Class states follow the cache's log; a pass whose snapshot leaves out nominations does not.
        states = None if any(k in self.cache.nominated for k in keys) else self.class_states
        if self.failures:
            snapshot = snapshot.with_avoid(self.avoid())
        t0, cpu0 = time.perf_counter(), time.process_time()
        placements, _, self.start = place(pods, snapshot, self.profile, self.options, start=self.start,
                                          cache=self.memo, states=states)
        self.stats.decide_seconds += time.perf_counter() - t0
        self.stats.decide_cpu_seconds += time.process_time() - cpu0
        self.stats.decided += len(placements)
        for qp, pl in zip(popped, placements):
            causation = self.pods.position_of(qp.key) or causation_of(qp.pod)
            if pl.node is not None:
                self.cache.assume(pl.pod, pl.node, pl.requests)
                self._spawn(self._bind(qp, pl, causation))
            else:
                self.stats.failed += 1
                self._failed(qp, pl, causation)
        if len(self.memo.feasibility) + len(self.memo.scores) > PRUNE_AT:
            self.memo.prune(self.cache.snapshot)
        # The next pass is sized to hold the event loop about PASS_SECONDS (costly pods, such as spread
        # ones, or a busy machine make it shorter), so that informer events and bindings are not starved.
        per_pod = (time.perf_counter() - started) / len(popped)
        fits = int(PASS_SECONDS / per_pod) if per_pod > 0 else self.batch
        self.pass_size = max(min(MIN_PASS, self.batch), min(self.batch, fits))
        return len(placements)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- outcomes ---

    async def _bind(self, qp: QueuedPod, pl: Placement, causation: int | None) -> None:
        meta = _meta(qp.pod)
        ns, name = meta.get("namespace") or "default", meta["name"]
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": pl.node}}
        async with self._binders:
            await self._select_node(qp.pod, pl.node, causation)
            try:
                await self._bindings.write(binding, causation=causation)
            except (errors.NotFoundError, errors.GoneError):
                self.cache.forget(qp.key)
                self.queue.delete(qp.key)
                return
            except errors.ConflictError as exc:
                # Bound by someone else, or being deleted: the informer brings the truth; nothing to retry.
                self.cache.forget(qp.key)
                self.queue.delete(qp.key)
                log.info("%s: binding %s: %s", self.name, qp.key, exc)
                return
            except Exception as exc:   # the API is unreachable or refused: back off and try again
                self.stats.bind_errors += 1
                self.cache.forget(qp.key)
                self.queue.failed(qp, backoff_only=True)
                self.queue.move(RESOURCES_FREED)
                log.warning("%s: binding %s to %s failed: %s", self.name, qp.key, pl.node, exc)
                self._event(qp.pod, "Warning", "FailedScheduling", f"Binding rejected: {exc}", "Scheduling",
                            None, causation)
                return
        self.queue.done(qp.key)
        self.stats.bound += 1
        if self.keep_stats:
            self.stats.bound_at[qp.key] = time.monotonic()
        self._event(qp.pod, "Normal", "Scheduled", pl.record["message"], "Binding", pl.record, causation)

    async def _select_node(self, pod: Obj, node: str, causation: int | None) -> None:
        """kube's PreBind for volumes: each unbound WaitForFirstConsumer claim of the pod is annotated
        volume.kubernetes.io/selected-node, so the provisioner makes its volume there (the binder reads
        it). Until the annotation is seen, the claim's user on that node holds the others there."""
        if not vol.has_claims(pod):
            return
        for claim in vol.resolve(pod, self.cache.volumes):
            if claim.kind != "wait" or claim.selected is not None:
                continue
            ns, name = claim.key.split("/", 1)
            try:
                await self.client.patch("persistentvolumeclaims", name,
                                        {"metadata": {"annotations": {vol.SELECTED_NODE: node}}},
                                        namespace=ns, type="merge", causation=causation)
            except errors.EventplaneError as exc:
                log.info("%s: selecting node %s for claim %s: %s", self.name, node, claim.key, exc)

    def _failed(self, qp: QueuedPod, pl: Placement, causation: int | None) -> None:
        record = pl.record
        message = record["message"]
        candidate = None
        pod = self._with_priority(qp.pod)
        if self.preemption_enabled and record["nodes"] and not self._awaiting_victims(pod):
            candidate = self._preempt_candidate(pod)
            if candidate is not None:
                record = dict(record, preemption={
                    "node": candidate.node, "victims": [pod_key(v) for v in candidate.victims],
                    "pdbViolations": candidate.pdb_violations,
                    "summary": f"nominated {candidate.node}, evicting "
                               f"{', '.join(pod_key(v) for v in candidate.victims)}"
                               + (f" ({candidate.pdb_violations} against a PodDisruptionBudget)"
                                  if candidate.pdb_violations else "")})
                self.stats.preemptions += 1
                self.cache.nominate(pod, candidate.node)
                self._spawn(self._preempt(qp, pod, candidate, causation))
            else:
                message += f" preemption: {_no_preemption(record)}"
                record = dict(record, message=message)
        self.queue.failed(qp, pl.rejected_by or (ANY,))
        self._event(qp.pod, "Warning", "FailedScheduling", message, "Scheduling", record, causation)
        self._spawn(self._mark_unschedulable(qp.pod, message, causation))

    def _awaiting_victims(self, pod: Obj) -> bool:
        """kube's podEligibleToPreemptOthers: a pod nominated to a node where lower-priority pods are still
        terminating waits for them instead of preempting again."""
        node = self.cache.nominated.get(pod_key(pod))
        if node is None:
            return False
        priority = self.priority_of(pod)
        return any(_meta(p).get("deletionTimestamp") and self.priority_of(p) < priority
                   for p in self.cache.pods_on(node))

    def _preempt_candidate(self, pod: Obj) -> preemption.Candidate | None:
        # No pod can have a lower priority than the lowest class (or 0, the priority of pods without
        # one): then there are no victims anywhere, and no need to look at every node.
        floor = min([0] + [int(pc.get("value") or 0) for pc in self.priority_classes.store.list()])
        if self.priority_of(pod) <= floor:
            return None
        budgets = preemption.budgets_from(self.pdbs.store.list(), self.pods.store.list()) \
            if len(self.pdbs.store) else []
        return preemption.select(pod, self.cache.snapshot_for([pod_key(pod)]), priority_of=self.priority_of,
                                 budgets=budgets, filters=DEFAULT_FILTERS)

    async def _preempt(self, qp: QueuedPod, pod: Obj, candidate: preemption.Candidate,
                       causation: int | None) -> None:
        """Nominate the node, then make room: victims get a DisruptionTarget condition and are evicted."""
        meta = _meta(pod)
        ns, name = meta.get("namespace") or "default", meta["name"]
        with contextlib.suppress(errors.EventplaneError):
            await self.client.patch(self.pods_resource, name, {"status": {"nominatedNodeName": candidate.node}}, namespace=ns,
                                    type="merge", subresource="status", causation=causation)
        for victim in candidate.victims:
            vm = _meta(victim)
            vns, vname = vm.get("namespace") or "default", vm["name"]
            vcause = self.pods.position_of(pod_key(victim)) or causation
            condition = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                         "message": f"{self.name}: preempting to accommodate a higher priority pod",
                         "lastTransitionTime": _now()}
            try:
                await self.client.patch(self.pods_resource, vname, {"status": {"conditions": [condition]}}, namespace=vns,
                                        type="strategic", subresource="status", causation=causation)
                if pod_key(victim) in candidate.violating:
                    # A PDB would refuse the eviction (429) and no node without violations exists: delete
                    # gracefully instead, as kube-scheduler itself does for every victim.
                    await self.client.delete(self.pods_resource, vname, namespace=vns, causation=causation)
                else:
                    await self.client.create_subresource(
                        self.pods_resource, vname, "eviction",
                        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": vname, "namespace": vns}},
                        namespace=vns, causation=causation)
            except errors.NotFoundError:
                continue
            except errors.EventplaneError as exc:
                log.warning("%s: preempting %s/%s: %s", self.name, vns, vname, exc)
                continue
            self._event(victim, "Normal", "Preempted",
                        f"Preempted by pod {meta.get('uid', '')} on node {candidate.node}", "Preempting", None,
                        vcause)

    async def _mark_unschedulable(self, pod: Obj, message: str, causation: int | None) -> None:
        """PodScheduled=False, reason Unschedulable, as kube-scheduler reports on the pod itself."""
        meta = _meta(pod)
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message") == message:
                return
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": _now()}
        with contextlib.suppress(errors.EventplaneError):
            await self.client.patch(self.pods_resource, meta["name"], {"status": {"conditions": [condition]}},
                                    namespace=meta.get("namespace") or "default", type="strategic",
                                    subresource="status", causation=causation)

    # --- events ---

    def _event(self, pod: Obj, type_: str, reason: str, message: str, action: str, record: dict | None,
               causation: int | None) -> None:
        if not self.events_enabled:
            return
        meta = _meta(pod)
        ns = meta.get("namespace") or "default"
        now = _now()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": meta["name"],
                               "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message, "type": type_, "action": action,
            "source": {"component": self.name}, "reportingComponent": self.name,
            "reportingInstance": self.identity, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        if record is not None:
            event["metadata"]["annotations"] = {RECORD_ANNOTATION: dumps(record)}
        self._events.put_nowait((event, causation))

    async def _write_events(self) -> None:
        """Every Event waiting goes in one request (each with its own causation)."""
        while True:
            batch = [await self._events.get()]
            while len(batch) < EVENT_BATCH and not self._events.empty():
                batch.append(self._events.get_nowait())
            try:
                results = await self.client.create_many("events", [e for e, _ in batch],
                                                        causations=[c for _, c in batch])
            except Exception as exc:  # the whole request failed
                results = [exc] * len(batch)
            finally:
                for _ in batch:
                    self._events.task_done()
            for (event, _), result in zip(batch, results):
                if isinstance(result, errors.EventplaneError):
                    log.info("%s: event for %s not recorded: %s", self.name, event["involvedObject"]["name"],
                             result)
                elif isinstance(result, Exception):
                    log.warning("%s: event for %s not recorded: %s", self.name, event["involvedObject"]["name"],
                                result)

    async def flush_events(self) -> None:
        await self._events.join()


def _age(pod: Obj) -> float:
    """Seconds since this version of the pod was written (its newest managedFields time), 0 if unknown."""
    times = [m.get("time") for m in _meta(pod).get("managedFields") or [] if m.get("time")]
    if not times:
        return 0.0
    try:
        when = datetime.strptime(max(times)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0.0
    return max((datetime.now(timezone.utc) - when).total_seconds(), 0.0)


def _no_preemption(record: dict) -> str:
    """kube's suffix when preemption cannot help: "0/N nodes are available: N No preemption victims found …",
    where nodes rejected by a filter no eviction can cure (or a PreFilter) count as "Preemption is not
    helpful for scheduling" (nodesWherePreemptionMightHelp)."""
    n = record["nodes"]
    hopeless = n if record.get("prefilter") else sum(
        g["count"] for g in record.get("rejected") or () if g["filter"] in preemption.UNRESOLVABLE)
    counts = {"No preemption victims found for incoming pod": n - hopeless,
              "Preemption is not helpful for scheduling": hopeless}
    return fit_error(n, {reason: count for reason, count in counts.items() if count})


async def run_scheduler(client: Client, *, identity: str, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                        profile: Profile = DEFAULT_PROFILE, options: Options = Options(),
                        preemption_enabled: bool = True, leader_elect: bool = True,
                        lease_namespace: str = "kube-system", lease_duration: float = 15.0,
                        renew_deadline: float = 10.0, retry_period: float = 2.0, **kw: Any) -> None:
    """Run one scheduler until cancelled; with leader_elect only while holding the Lease named after the
    scheduler (kube-system/<scheduler name>), campaigning again after losing it."""
    def make() -> Scheduler:
        return Scheduler(client, name=scheduler_name, identity=identity, profile=profile, options=options,
                         preemption_enabled=preemption_enabled, **kw)

    if not leader_elect:
        await make().run()
        return
    while True:
        elector = LeaderElector(client, name=scheduler_name, namespace=lease_namespace, identity=identity,
                                lease_duration=lease_duration, renew_deadline=renew_deadline,
                                retry_period=retry_period, on_started_leading=lambda: make().run())
        await elector.run()
        log.warning("%s: %s lost the lease; campaigning again", scheduler_name, identity)


__all__: Sequence[str] = ("DEFAULT_SCHEDULER_NAME", "Scheduler", "Stats", "run_scheduler")
