"""Small helpers shared by the workload controllers (Job, CronJob, StatefulSet, DaemonSet).

Fed by the controllers' pure decision functions (pods, owner references,
conditions, times) and by their thin loops (`ReadBarrier`). Nothing here
talks to the cluster; the loops write through eventplane.client.

`ReadBarrier` replaces client-go's ControllerExpectations with something exact
that eventplane's positions allow: after a controller writes, it remembers the
position (resourceVersion) of its write; until the informer that will see that
write is current to that position, the controller's cache is known to be
stale for that key and it must not decide from it (it would create the same
pod twice). Positions are global and monotonic (DESIGN invariant 3), so
"current to P" means "has seen every event up to P".
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from eventplane.objects import errors
from reconcilers.informer import Informer
from reconcilers.runner import Controller, Requeue

Obj = dict[str, Any]

log = logging.getLogger("eventplane.reconcilers.workload")


# --- time -----------------------------------------------------------------------------------------

def now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- metadata -------------------------------------------------------------------------------------

def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def position(obj: Obj | None) -> int:
    rv = meta(obj or {}).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else 0


def owner_reference(owner: Obj, *, api_version: str, kind: str) -> Obj:
    """The controller reference a workload puts on what it creates (blocks the owner's foreground deletion)."""
    m = meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": m.get("name"), "uid": m.get("uid"),
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: Obj) -> Obj | None:
    return next((r for r in meta(obj).get("ownerReferences") or [] if r.get("controller")), None)


def controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


# --- pods -----------------------------------------------------------------------------------------

def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def terminated(pod: Obj) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def active(pod: Obj) -> bool:
    """Counted as running by a workload: neither finished nor being deleted."""
    return not terminated(pod) and not deleting(pod)


def condition(obj: Obj, type_: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return phase(pod) == "Running" and c is not None and c.get("status") == "True"


def available(pod: Obj, min_ready_seconds: int, at: datetime) -> bool:
    if not ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and (at - since).total_seconds() >= min_ready_seconds


def new_pod(template: Obj | None, *, namespace: str, owner_ref: Obj, name: str | None = None,
            generate_name: str | None = None, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, finalizers: Iterable[str] = ()) -> Obj:
    """A pod from a PodTemplateSpec, as the workload controllers make them (GetPodFromTemplate)."""
    template = copy.deepcopy(template or {})
    tmeta = template.get("metadata") or {}
    md: Obj = {"namespace": namespace, "ownerReferences": [owner_ref]}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    pod_labels = {**(tmeta.get("labels") or {}), **(labels or {})}
    pod_annotations = {**(tmeta.get("annotations") or {}), **(annotations or {})}
    if pod_labels:
        md["labels"] = pod_labels
    if pod_annotations:
        md["annotations"] = pod_annotations
    if finalizers:
        md["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": template.get("spec") or {}}


def newest_first(pods: Iterable[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: (meta(p).get("creationTimestamp") or "", meta(p).get("name") or ""),
                  reverse=True)


def deletion_order(pods: Iterable[Obj]) -> list[Obj]:
    """Which pods to delete first (ActivePods' order): unscheduled, then pending, then not ready, then newest."""
    def rank(p: Obj) -> tuple:
        return (bool((p.get("spec") or {}).get("nodeName")), {"Pending": 0, "Unknown": 1}.get(phase(p), 2),
                ready(p))
    return sorted(newest_first(pods), key=rank)


# --- conditions -----------------------------------------------------------------------------------

def set_condition(conditions: list[Obj] | None, type_: str, status: str, *, reason: str = "", message: str = "",
                  at: datetime) -> list[Obj]:
    """The conditions with `type_` set; lastTransitionTime changes only when the status does."""
    out = [dict(c) for c in conditions or []]
    stamp = rfc3339(at)
    for c in out:
        if c.get("type") == type_:
            if (c.get("status"), c.get("reason", ""), c.get("message", "")) == (status, reason, message):
                return out  # unchanged: no write for a condition that still holds
            if c.get("status") != status:
                c["lastTransitionTime"] = stamp
            c.update(status=status, reason=reason, message=message, lastProbeTime=stamp)
            return out
    out.append({"type": type_, "status": status, "reason": reason, "message": message,
                "lastProbeTime": stamp, "lastTransitionTime": stamp})
    return out


def has_condition(obj: Obj, type_: str, status: str = "True") -> bool:
    c = condition(obj, type_)
    return c is not None and c.get("status") == status


# --- read-your-writes ---------------------------------------------------------------------------

class ReadBarrier:
    """Per key, the positions of this controller's own writes its informers must reach before it decides.

        barrier.wrote(key, informer, response)       # after every write
        if not barrier.passed(key): requeue shortly  # at the start of reconcile
    """

    def __init__(self) -> None:
        self._waits: dict[str, dict[int, tuple[Any, int]]] = {}

    def wrote(self, key: str, informer: Any, obj: Obj | None) -> None:
        pos = position(obj)
        if not pos:
            return
        waits = self._waits.setdefault(key, {})
        prev = waits.get(id(informer))
        if prev is None or prev[1] < pos:
            waits[id(informer)] = (informer, pos)

    def passed(self, key: str) -> bool:
        waits = self._waits.get(key)
        if not waits:
            return True
        for ident, (informer, pos) in list(waits.items()):
            current = informer.resource_version
            if current is not None and str(current).isdigit() and int(current) >= pos:
                del waits[ident]
        if not waits:
            del self._waits[key]
            return True
        return False

    def forget(self, key: str) -> None:
        self._waits.pop(key, None)


# --- the loop -------------------------------------------------------------------------------------

class WorkloadController(Controller):
    """A Controller that also starts (and waits for) the informers it reads besides its primary one,
    so that it runs the same whether or not a manager has started the shared factory."""

    def __init__(self, name: str, informer: Informer, reconcile: Any, *, secondary: Iterable[Informer] = (),
                 workers: int = 1) -> None:
        async def reconciling(request: Any) -> None:
            try:
                await reconcile(request)
            except errors.ConflictError as exc:   # someone wrote first: expected, retried quietly with backoff
                raise Requeue(str(exc)) from exc
        super().__init__(name, informer, reconciling, workers=workers)
        self.secondary = list(secondary)

    async def run(self) -> None:
        for inf in self.secondary:
            inf.start()
        await asyncio.gather(*(inf.wait_synced() for inf in self.secondary))
        await super().run()


# --- ControllerRevisions (StatefulSet and DaemonSet history) --------------------------------------

_SAFE = "bcdfghjklmnpqrstvwxz2456789"   # k8s.io/apimachinery/pkg/util/rand alphanums: no vowels, no 0/1/3


def safe_encode(text: str) -> str:
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def revision_data(template: Obj | None) -> Obj:
    """What a ControllerRevision stores: the patch that replaces the pod template (getPatch)."""
    return {"spec": {"template": {**copy.deepcopy(template or {}), "$patch": "replace"}}}


def revision_hash(data: Obj, collision_count: int = 0) -> str:
    import json
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return safe_encode(str(fnv32a(raw + str(collision_count).encode() if collision_count else raw)))


def template_of(revision: Obj) -> Obj:
    tpl = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    tpl.pop("$patch", None)
    return tpl


def new_revision(owner: Obj, *, api_version: str, kind: str, data: Obj, number: int, hash_: str,
                 labels: dict[str, str]) -> Obj:
    m = meta(owner)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": f"{m.get('name')}-{hash_}", "namespace": m.get("namespace"),
                         "labels": {**labels, "controller.kubernetes.io/hash": hash_},
                         "ownerReferences": [owner_reference(owner, api_version=api_version, kind=kind)]},
            "data": data, "revision": number}


def pick_revisions(owner: Obj, revisions: list[Obj], template: Obj | None, *, api_version: str, kind: str,
                   labels: dict[str, str]) -> tuple[Obj, Obj | None, Obj | None]:
    """(the update revision, a revision to create, a revision whose number to bump) for a template.

    A template equal to an older revision's reuses it under the next number, as a rollback does."""
    data = revision_data(template)
    newest = max((r.get("revision") or 0 for r in revisions), default=0)
    same = [r for r in revisions if r.get("data") == data]
    if same:
        rev = max(same, key=lambda r: r.get("revision") or 0)
        if (rev.get("revision") or 0) < newest:
            bumped = {**rev, "revision": newest + 1}
            return bumped, None, bumped
        return rev, None, None
    collision = ((owner.get("status") or {}).get("collisionCount")) or 0
    rev = new_revision(owner, api_version=api_version, kind=kind, data=data, number=newest + 1,
                       hash_=revision_hash(data, collision), labels=labels)
    return rev, rev, None


# --- adoption -------------------------------------------------------------------------------------

async def claim_pods(client: Any, owner: Obj, candidates: list[Obj], *, api_version: str, kind: str,
                     causation: int | None, barrier: ReadBarrier, key: str, informer: Informer) -> list[Obj]:
    """ClaimPods: the pods `owner` controls after adopting matching orphans (a set deleted with
    --cascade=orphan and made again takes its pods back) and releasing its pods that stopped matching.
    Patches carry the pod's resourceVersion, so a pod changed meanwhile is left to the next round."""
    from .podcontrol import claim, selector_of

    decided = claim(owner, selector_of(owner), candidates)
    ref = owner_reference(owner, api_version=api_version, kind=kind)
    owned = [p for p in decided.owned if p not in decided.adopt]
    for pod, adding in [*((p, True) for p in decided.adopt), *((p, False) for p in decided.release)]:
        refs = [r for r in meta(pod).get("ownerReferences") or [] if r.get("uid") != ref["uid"]]
        patch = {"metadata": {"ownerReferences": [*refs, ref] if adding else refs,
                              "resourceVersion": meta(pod).get("resourceVersion")}}
        try:
            out = await client.patch("pods", meta(pod)["name"], patch, namespace=meta(pod).get("namespace"),
                                     causation=causation)
        except (errors.ConflictError, errors.NotFoundError):
            continue
        barrier.wrote(key, informer, out)
        if adding:
            owned.append(out)
    return owned


async def create_or_adopt_revision(client: Any, revision: Obj, *, causation: int | None) -> Obj | None:
    """Create a ControllerRevision; if one of that name exists with no controller and the same data (its
    owner was deleted with --cascade=orphan and made again), adopt it instead. None if neither."""
    m = meta(revision)
    try:
        return await client.create(revision, namespace=m.get("namespace"), causation=causation)
    except errors.AlreadyExistsError:
        existing = await client.get("controllerrevisions", m["name"], namespace=m.get("namespace"))
    if controller_of(existing) is not None or existing.get("data") != revision.get("data"):
        return None
    try:
        return await client.patch("controllerrevisions", m["name"], {"metadata": {
            "ownerReferences": [*(meta(existing).get("ownerReferences") or []), *m["ownerReferences"]],
            "resourceVersion": meta(existing).get("resourceVersion")}}, namespace=m.get("namespace"),
            causation=causation)
    except (errors.ConflictError, errors.NotFoundError):
        return None


# --- Events ---------------------------------------------------------------------------------------

class EventRecorder:
    """core/v1 Events about the objects a controller manages (what `kubectl describe` shows), written in
    the background with the causation of the event that led to them. An Event that cannot be written
    is logged and dropped: never a reason to fail a reconcile. `enabled=False` writes none."""

    def __init__(self, client: Any, *, component: str, instance: str = "", enabled: bool = True) -> None:
        self.client, self.component, self.instance, self.enabled = client, component, instance, enabled
        self._pending: set[asyncio.Task] = set()

    def record(self, obj: Obj, type_: str, reason: str, message: str, *, causation: int | None) -> None:
        if not self.enabled:
            return
        m = meta(obj)
        ns = m.get("namespace") or "default"
        stamp = rfc3339(now())
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": f"{m.get('name', '')}.{time.time_ns():x}", "namespace": ns},
                 "involvedObject": {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", ""),
                                    "name": m.get("name", ""), "uid": m.get("uid", ""),
                                    "resourceVersion": m.get("resourceVersion", ""),
                                    **({"namespace": m["namespace"]} if m.get("namespace") else {})},
                 "reason": reason, "message": message, "type": type_, "count": 1,
                 "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": self.component},
                 "reportingComponent": self.component, "reportingInstance": self.instance}
        task = asyncio.ensure_future(self._write(event, causation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, event: Obj, causation: int | None) -> None:
        try:
            await self.client.create(event, causation=causation)
        except Exception as exc:
            log.info("event %s about %s not recorded: %s", event["reason"], event["involvedObject"]["name"], exc)

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
