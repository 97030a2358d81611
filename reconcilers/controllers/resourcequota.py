"""The ResourceQuota controller: status.hard and status.used of every quota, kept current.

Fed by the resourcequotas informer and by an informer per resource the quotas
count (pods, services, configmaps, secrets, persistentvolumeclaims, and any
`count/<resource>.<group>` named in a quota, made when first named); a change
to any of them wakes the quotas of its namespace. `usage` is a pure function
of (quota, the namespace's objects by resource) to the status; the thin loop
`ResourceQuotaController` writes it to resourcequotas/status with the
causation of the event that woke it.

What is counted, as Kubernetes' quota evaluators do (pkg/quota/v1/evaluator/core):
pods, and for pods not in a terminal phase cpu/memory/ephemeral-storage
`requests.*` (also spelled bare `cpu`, `memory`) and `limits.*` — containers
summed, init containers maxed, plus overhead; services, services.loadbalancers,
services.nodeports; configmaps, secrets, replicationcontrollers,
resourcequotas; persistentvolumeclaims and requests.storage, also per class
as `<class>.storageclass.storage.k8s.io/requests.storage` and
`.../persistentvolumeclaims`; `count/<resource>[.<group>]` for any resource.
Quota scopes Terminating, NotTerminating, BestEffort and NotBestEffort, and
scopeSelector expressions (PriorityClass, CrossNamespacePodAffinity), filter
the pods counted. Enforcement at admission is not here (the security
issue's admission chain).
"""
from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

from eventplane.objects import quantity
from reconcilers.informer import Informer
from reconcilers.runner import Request

from . import _workload as w
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.resourcequota")

Obj = dict[str, Any]

COMPUTE = ("cpu", "memory", "ephemeral-storage")
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
PLAIN_COUNTS = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                "replicationcontrollers": "replicationcontrollers", "resourcequotas": "resourcequotas",
                "persistentvolumeclaims": "persistentvolumeclaims"}


def resource_for(name: str) -> str | None:
    """The resource (informer name) whose objects a quota entry counts."""
    if name.startswith("count/"):
        return name[len("count/"):]
    if name in PLAIN_COUNTS:
        return PLAIN_COUNTS[name]
    if name.startswith("services."):
        return "services"
    if name == "requests.storage" or STORAGE_CLASS_SUFFIX in name:
        return "persistentvolumeclaims"
    if name in COMPUTE or name.split(".", 1)[-1] in COMPUTE and name.split(".", 1)[0] in ("requests", "limits"):
        return "pods"
    return None


def _q(text: Any) -> Fraction:
    try:
        return quantity.value_of(str(text))
    except ValueError:
        return Fraction(0)


def pod_amounts(pod: Obj, which: str) -> dict[str, Fraction]:
    """requests or limits of a pod: containers summed, init containers maxed, overhead added."""
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get(which) or {}).items():
            total[k] = total.get(k, Fraction(0)) + _q(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get(which) or {}).items():
            total[k] = max(total.get(k, Fraction(0)), _q(v))
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, Fraction(0)) + _q(v)
    return total


def _best_effort(pod: Obj) -> bool:
    for c in [*((pod.get("spec") or {}).get("containers") or []), *((pod.get("spec") or {}).get("initContainers")
                                                                   or [])]:
        r = c.get("resources") or {}
        if any(k in COMPUTE[:2] for k in (r.get("requests") or {})) or any(k in COMPUTE[:2]
                                                                          for k in (r.get("limits") or {})):
            return False
    return True


def _scope_expression(pod: Obj, expr: Obj) -> bool:
    """One scopeSelector requirement: PriorityClass by In/NotIn/Exists/DoesNotExist on priorityClassName,
    CrossNamespacePodAffinity, or one of the plain scopes with Exists/DoesNotExist."""
    spec = pod.get("spec") or {}
    name, op, values = expr.get("scopeName"), expr.get("operator"), set(expr.get("values") or [])
    if name == "PriorityClass":
        pc = spec.get("priorityClassName")
        return {"In": pc in values, "NotIn": pc not in values, "Exists": bool(pc),
                "DoesNotExist": not pc}.get(op, False)
    if name == "CrossNamespacePodAffinity":
        affinity = spec.get("affinity") or {}
        terms = [t for k in ("podAffinity", "podAntiAffinity") for key in (
            "requiredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution")
            for t in ((affinity.get(k) or {}).get(key) or [])]
        crosses = any((t.get("podAffinityTerm") or t).get("namespaces") or
                      (t.get("podAffinityTerm") or t).get("namespaceSelector") is not None for t in terms)
        return crosses if op == "Exists" else not crosses
    holds = _in_scope(pod, [name])
    return holds if op != "DoesNotExist" else not holds


def _in_scope(pod: Obj, scopes: list[str], expressions: list[Obj] | tuple = ()) -> bool:
    if not all(_scope_expression(pod, e) for e in expressions):
        return False
    spec = pod.get("spec") or {}
    for scope in scopes:
        terminating = spec.get("activeDeadlineSeconds") is not None
        if scope == "Terminating" and not terminating or scope == "NotTerminating" and terminating:
            return False
        if scope == "BestEffort" and not _best_effort(pod) or scope == "NotBestEffort" and _best_effort(pod):
            return False
    return True


def _fmt(value: Fraction, hard: Any) -> str:
    try:
        fmt = quantity.parse(str(hard))[1]
    except ValueError:
        fmt = quantity.DECIMAL_SI
    return quantity.format_value(value, fmt)


def usage(quota: Obj, objects: dict[str, list[Obj]]) -> Obj:
    """The status of `quota` given the objects of its namespace, by resource name."""
    spec = quota.get("spec") or {}
    hard = dict(spec.get("hard") or {})
    scopes = list(spec.get("scopes") or [])
    expressions = list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])
    pods = [p for p in objects.get("pods") or [] if not w.terminated(p) and _in_scope(p, scopes, expressions)]
    claims = [c for c in objects.get("persistentvolumeclaims") or [] if not w.deleting(c)]
    used: dict[str, str] = {}
    for name, limit in hard.items():
        value: Fraction | None = None
        if name == "pods" or name == "count/pods":
            value = Fraction(len(pods))
        elif name.startswith(("requests.", "limits.")) and name.split(".", 1)[1] in COMPUTE or name in COMPUTE:
            which, _, res = name.partition(".") if "." in name else ("requests", "", name)
            value = sum((pod_amounts(p, which).get(res, Fraction(0)) for p in pods), Fraction(0))
        elif name == "services.loadbalancers":
            value = Fraction(sum(1 for s in objects.get("services") or []
                                 if (s.get("spec") or {}).get("type") == "LoadBalancer"))
        elif name == "services.nodeports":
            value = Fraction(sum(sum(1 for p in (s.get("spec") or {}).get("ports") or [] if p.get("nodePort"))
                                 for s in objects.get("services") or []
                                 if (s.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer")))
        elif name == "requests.storage":
            value = sum((_q(((c.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", 0))
                         for c in claims), Fraction(0))
        elif STORAGE_CLASS_SUFFIX in name:
            cls, _, what = name.partition(STORAGE_CLASS_SUFFIX)
            mine = [c for c in claims if (c.get("spec") or {}).get("storageClassName") == cls]
            if what == "persistentvolumeclaims":
                value = Fraction(len(mine))
            elif what == "requests.storage":
                value = sum((_q(((c.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", 0))
                             for c in mine), Fraction(0))
        elif name == "persistentvolumeclaims":
            value = Fraction(len(claims))
        elif (resource := resource_for(name)) is not None:
            value = Fraction(sum(1 for o in objects.get(resource) or [] if not w.deleting(o)))
        if value is not None:
            used[name] = _fmt(value, limit)
    return {**(quota.get("status") or {}), "hard": hard, "used": used}


class ResourceQuotaController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.factory = ctx.informers
        self.quotas = ctx.informers.informer("resourcequotas")
        self.informers: dict[str, Informer] = {}
        self.barrier = w.ReadBarrier()
        for resource in ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims"):
            self._track(resource)
        self.controller = w.WorkloadController("resourcequota", self.quotas, self.reconcile,
                                               secondary=list(self.informers.values()))

    def _track(self, resource: str) -> Informer:
        inf = self.informers.get(resource)
        if inf is None:
            inf = self.informers[resource] = self.factory.informer(resource)
            wake = self._wake
            inf.add_handler(on_add=wake, on_update=lambda old, new: wake(new), on_delete=wake)
        return inf

    def _wake(self, obj: Obj) -> None:
        ns = w.meta(obj).get("namespace")
        if ns:
            for key in self.quotas.store.index_keys("namespace", ns):
                self.controller.queue.add(key)

    async def reconcile(self, req: Request) -> None:
        if not self.barrier.passed(req.key):
            self.controller.queue.add_after(req.key, 0.05)
            return
        quota = self.quotas.store.get(req.key)
        if quota is None or w.deleting(quota):
            return
        needed = {r for r in map(resource_for, ((quota.get("spec") or {}).get("hard") or {})) if r}
        objects: dict[str, list[Obj]] = {}
        for resource in sorted(needed):
            if resource == "resourcequotas":
                objects[resource] = self.quotas.store.by_index("namespace", req.namespace)
                continue
            try:
                await self.client.resolve(resource)   # a resource the server does not serve counts as nothing
                inf = self._track(resource)
                if not inf.running:
                    inf.start()
                await inf.wait_synced(timeout=30)
            except Exception as exc:
                log.warning("resourcequota %s: cannot count %s: %s", req.key, resource, exc)
                continue
            objects[resource] = inf.store.by_index("namespace", req.namespace)
        status = usage(quota, objects)
        if status != (quota.get("status") or {}):
            out = await self.client.update({**quota, "status": status}, subresource="status", causation=req.causation)
            self.barrier.wrote(req.key, self.quotas, out)


def build(ctx: ControllerContext) -> list:
    return [ResourceQuotaController(ctx).controller]

