"""The disruption controller: each PodDisruptionBudget's status says how many of its pods may go now.

Fed by the poddisruptionbudgets informer, the pods informer (a pod's change
wakes the budgets of its namespace whose selector matches it) and the caches
of the workload controllers whose scale a budget may count against
(ReplicaSets — or the Deployment that owns them —, ReplicationControllers,
StatefulSets). Consumed by the API's pods/eviction (eventplane/api/eviction.py),
which refuses an eviction when disruptionsAllowed is 0 and otherwise takes one
disruption, recording the pod in status.disruptedPods.

`budget_status` is the pure decision, as kube-controller-manager's disruption
controller computes it:

- expectedPods and desiredHealthy: minAvailable as a number counts against
  the matching pods; minAvailable as a percentage and maxUnavailable against
  the sum of the replicas of the pods' controllers (rounded up);
- currentHealthy: matching pods that are Ready, not being deleted and not in
  disruptedPods (an eviction the API granted less than two minutes ago);
- disruptionsAllowed = currentHealthy - desiredHealthy, never negative, and 0
  while no pod is expected;
- the DisruptionAllowed condition (SufficientPods / InsufficientPods) and
  observedGeneration, which the eviction checks before trusting the status.

A pod whose controller cannot be found makes the budget fail safe:
disruptionsAllowed 0 and DisruptionAllowed False with reason SyncFailed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from eventplane.objects import errors
from eventplane.objects.selectors import LabelSelector
from reconcilers.runner import Controller, Request, Requeue

from ._informed import InformedController
from .endpoints import Causes, pod_ready
from .registry import ControllerContext

Obj = dict[str, Any]
DELETION_TIMEOUT = timedelta(minutes=2)   # an evicted pod not deleted by then counts again
_PERCENT = re.compile(r"^(\d+)%$")

__all__ = ["Scale", "budget_status", "build", "scaled_value", "selects"]


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def selects(pdb: Obj, pod: Obj) -> bool:
    """policy/v1: an empty selector selects every pod of the namespace, a missing one none."""
    if _meta(pdb).get("namespace") != _meta(pod).get("namespace"):
        return False
    try:
        return LabelSelector.from_object((pdb.get("spec") or {}).get("selector")).matches(
            _meta(pod).get("labels") or {})
    except errors.BadRequestError:
        return False


def scaled_value(value: Any, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent, rounding up."""
    if isinstance(value, int):
        return value
    m = _PERCENT.match(str(value))
    if m is None:
        raise ValueError(f"invalid value for IntOrString: invalid value {value!r}")
    return math.ceil(int(m.group(1)) * total / 100)


class Scale:
    """The replicas of the pods' controllers (pure once built: a mapping the loop fills from its caches)."""

    def __init__(self, controllers: dict[str, tuple[str, int]]) -> None:
        self.controllers = controllers    # controller uid → (the uid it counts as, replicas)

    def expected(self, pods: list[Obj]) -> int:
        counted: dict[str, int] = {}
        for pod in pods:
            ref = next((r for r in _meta(pod).get("ownerReferences") or [] if r.get("controller")), None)
            if ref is None:
                continue  # an unmanaged pod counts for nothing, as in Kubernetes
            found = self.controllers.get(ref.get("uid", ""))
            if found is None:
                raise LookupError(f'found no controllers for pod "{_meta(pod).get("name")}"')
            counted[found[0]] = found[1]
        return sum(counted.values())


@dataclass(frozen=True)
class Outcome:
    status: Obj
    recheck: datetime | None = None    # when a disrupted pod's grace runs out


def _condition(status: Obj, old: list[Obj] | None, now: str, *, reason: str | None = None,
               message: str = "") -> list[Obj]:
    allowed = status.get("disruptionsAllowed", 0) > 0 and reason is None
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
            "reason": reason or ("SufficientPods" if allowed else "InsufficientPods"), "message": message,
            "observedGeneration": status.get("observedGeneration", 0)}
    prev = next((c for c in old or [] if c.get("type") == "DisruptionAllowed"), None)
    cond["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == cond["status"] \
        and prev.get("lastTransitionTime") else now
    return [c for c in old or [] if c.get("type") != "DisruptionAllowed"] + [cond]


def budget_status(pdb: Obj, pods: list[Obj], scale: Scale, now: datetime) -> Outcome:
    spec, old = pdb.get("spec") or {}, pdb.get("status") or {}
    generation = _meta(pdb).get("generation", 0)
    stamp = _rfc3339(now)
    pods = [p for p in pods if selects(pdb, p)]
    try:
        if spec.get("maxUnavailable") is not None:
            expected = scale.expected(pods)
            desired = max(expected - scaled_value(spec["maxUnavailable"], expected), 0)
        elif spec.get("minAvailable") is not None and isinstance(spec["minAvailable"], int):
            expected, desired = len(pods), spec["minAvailable"]
        elif spec.get("minAvailable") is not None:
            expected = scale.expected(pods)
            desired = scaled_value(spec["minAvailable"], expected)
        else:
            expected, desired = 0, 0
    except (LookupError, ValueError) as exc:
        status = {**old, "disruptionsAllowed": 0, "observedGeneration": generation}
        status["conditions"] = _condition(status, old.get("conditions"), stamp, reason="SyncFailed",
                                          message=str(exc))
        return Outcome(status)
    disrupted: dict[str, str] = {}
    recheck: datetime | None = None
    recorded = old.get("disruptedPods") or {}
    for pod in pods:
        name = _meta(pod).get("name", "")
        if _meta(pod).get("deletionTimestamp") or name not in recorded:
            continue
        at = _time(recorded[name])
        if at is None or at + DELETION_TIMEOUT < now:
            continue  # expected to be deleted by now, and was not: it counts again
        disrupted[name] = recorded[name]
        recheck = min(recheck, at + DELETION_TIMEOUT) if recheck else at + DELETION_TIMEOUT
    healthy = sum(1 for p in pods if not _meta(p).get("deletionTimestamp")
                  and _meta(p).get("name") not in disrupted and pod_ready(p))
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status: Obj = {"observedGeneration": generation, "currentHealthy": healthy, "desiredHealthy": desired,
                   "expectedPods": expected, "disruptionsAllowed": allowed}
    if disrupted:
        status["disruptedPods"] = disrupted
    status["conditions"] = _condition(status, old.get("conditions"), stamp)
    return Outcome(status, recheck)


def same_status(a: Obj | None, b: Obj) -> bool:
    """Equal but for the conditions' transition times."""
    def norm(s: Obj | None) -> Obj:
        s = dict(s or {})
        s["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []]
        s.setdefault("disruptedPods", {})
        return s
    return norm(a) == norm(b)


# --- the loop ---------------------------------------------------------------------------------------------

def build(ctx: ControllerContext) -> list[Controller]:
    pdbs = ctx.informers.informer("poddisruptionbudgets")
    pods = ctx.informers.informer("pods")
    workloads = {kind: ctx.informers.informer(resource) for kind, resource in (
        ("ReplicaSet", "replicasets"), ("Deployment", "deployments"), ("StatefulSet", "statefulsets"),
        ("ReplicationController", "replicationcontrollers"))}
    causes = Causes()

    def scale() -> Scale:
        out: dict[str, tuple[str, int]] = {}
        deployments = {_meta(d).get("uid"): d for d in workloads["Deployment"].store.list()}
        for kind, inf in workloads.items():
            if kind == "Deployment":
                continue
            for w in inf.store.list():
                uid, replicas = _meta(w).get("uid", ""), (w.get("spec") or {}).get("replicas", 1)
                owner = next((r for r in _meta(w).get("ownerReferences") or [] if r.get("controller")
                              and r.get("kind") == "Deployment"), None) if kind == "ReplicaSet" else None
                if owner is not None and owner.get("uid") in deployments:
                    d = deployments[owner["uid"]]
                    out[uid] = (owner["uid"], (d.get("spec") or {}).get("replicas", 1))
                else:
                    out[uid] = (uid, replicas)
        return Scale(out)

    async def reconcile(req: Request) -> None:
        pdb = pdbs.store.get(req.key)
        if pdb is None:
            return
        now = datetime.now(timezone.utc)
        outcome = budget_status(pdb, pods.store.by_index("namespace", req.namespace), scale(), now)
        if not same_status(pdb.get("status"), outcome.status):
            try:
                await ctx.client.update({**pdb, "status": outcome.status}, subresource="status",
                                        causation=causes.of(req))
            except errors.ConflictError:
                raise Requeue() from None
            except errors.NotFoundError:
                return
        if outcome.recheck is not None:
            controller.queue.add_after(req.key, max((outcome.recheck - now).total_seconds(), 0.0) + 0.5)

    controller = InformedController("disruption", pdbs, reconcile, reads=[pods, *workloads.values()], workers=2)

    def wake(*objs: Obj) -> None:
        for obj in objs:
            ns = _meta(obj).get("namespace")
            for pdb in pdbs.store.by_index("namespace", ns) if ns else []:
                if obj.get("kind") not in (None, "Pod") or selects(pdb, obj):
                    key = f"{ns}/{_meta(pdb)['name']}"
                    causes.note(key, objs[-1])
                    controller.queue.add(key)

    pods.add_handler(on_add=lambda p: wake(p), on_update=lambda o, n: wake(o, n), on_delete=lambda p: wake(p))
    for inf in workloads.values():  # a scale change moves expectedPods of the budgets in its namespace
        inf.add_handler(on_update=lambda o, n: wake(n) if (o.get("spec") or {}).get("replicas") !=
                        (n.get("spec") or {}).get("replicas") else None)
    return [controller]
