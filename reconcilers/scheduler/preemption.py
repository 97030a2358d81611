"""Preemption: which lower-priority pods, on which node, must go so that a pod that fits nowhere can run.

Fed by the scheduler loop with a pod whose Placement found no node, the
Snapshot, every pod's priority and the PodDisruptionBudgets; returns a
Candidate (node, victims, how many victims a PDB would rather keep) or None.
The loop then nominates the node (status.nominatedNodeName), evicts the
victims and retries the pod once they are gone. Pure: nothing here writes.

kube-scheduler's DefaultPreemption, step by step:

1. A pod with preemptionPolicy Never does not preempt.
2. Only nodes whose rejection removing pods could cure are candidates: not
   those rejected by node name, node affinity/selector, taints, an
   unschedulable node, a missing topology label or a volume's placement
   (UnschedulableAndUnresolvable in kube's terms).
3. On each candidate remove every pod of strictly lower priority; if the pod
   still does not fit, the node is no candidate.
4. Reprieve as many as possible, most important first (higher priority, then
   older): first the victims whose removal would break a PDB, then the rest.
   A reprieved pod goes back; if the pod no longer fits, it is a victim again.
   What is left is a minimal set in that order.
5. Pick the node with the fewest PDB violations, then the lowest highest
   victim priority, then the smallest sum of victim priorities, then the
   fewest victims, then the first examined.

Filters that read other nodes (inter-pod affinity, topology spread) are
prepared again on each candidate's changed snapshot only when the pod itself
has such constraints; otherwise they are prepared once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eventplane.objects import selectors as sel

from .filters import DEFAULT_FILTERS, Filter
from .resources import NodeInfo, Obj, Snapshot, pod_key

# Rejections no eviction can cure (kube: UnschedulableAndUnresolvable).
UNRESOLVABLE = frozenset({"NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "VolumeBinding",
                          "VolumeZone"})


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget as preemption reads it: who it covers and how many may go now."""

    namespace: str
    selector: sel.LabelSelector
    disruptions_allowed: int

    def covers(self, pod: Obj) -> bool:
        meta = pod.get("metadata") or {}
        return (meta.get("namespace") or "default") == self.namespace and not self.selector.empty \
            and self.selector.matches(meta.get("labels"))


@dataclass(frozen=True)
class Candidate:
    node: str
    victims: tuple[Obj, ...]
    pdb_violations: int
    violating: frozenset[str]  # keys of victims whose eviction a PDB would refuse


def _start_time(pod: Obj) -> str:
    return (pod.get("status") or {}).get("startTime") or (pod.get("metadata") or {}).get("creationTimestamp") or ""


def _fits(pod: Obj, info: NodeInfo, snapshot: Snapshot, filters: Sequence[Filter],
          states: dict[str, Any], reprepare: bool) -> bool:
    for f in filters:
        state = f.prepare(pod, snapshot) if (reprepare and f.scope == "cluster") else states[f.name]
        if f.check(pod, info, snapshot, state):
            return False
    return True


def _violations(victims: Iterable[Obj], budgets: Sequence[Budget]) -> set[str]:
    """Keys of the victims a PDB would not let go (kube's filterPodsWithPDBViolation)."""
    left = [b.disruptions_allowed for b in budgets]
    out = set()
    for v in victims:
        for i, b in enumerate(budgets):
            if b.covers(v):
                left[i] -= 1
                if left[i] < 0:
                    out.add(pod_key(v))
    return out


def select(pod: Obj, snapshot: Snapshot, *, priority_of: Callable[[Obj], int], budgets: Sequence[Budget] = (),
           filters: Sequence[Filter] = DEFAULT_FILTERS) -> Candidate | None:
    """The best candidate node and its victims, or None when no eviction would make room."""
    spec = pod.get("spec") or {}
    if spec.get("preemptionPolicy") == "Never":
        return None
    priority = priority_of(pod)
    key = pod_key(pod)
    states = {f.name: f.prepare(pod, snapshot) for f in filters}
    reprepare = bool(((spec.get("affinity") or {}).get("podAffinity") or {})
                     .get("requiredDuringSchedulingIgnoredDuringExecution")
                     or ((spec.get("affinity") or {}).get("podAntiAffinity") or {})
                     .get("requiredDuringSchedulingIgnoredDuringExecution")
                     or spec.get("topologySpreadConstraints"))
    best: tuple[tuple, Candidate] | None = None
    unresolvable = [f for f in filters if f.name in UNRESOLVABLE]
    for order, info in enumerate(snapshot.nodes):
        if any(f.check(pod, info, snapshot, states[f.name]) for f in unresolvable):
            continue
        lower = [p for p in info.pods if pod_key(p) != key and priority_of(p) < priority]
        if not lower:
            continue
        keep = [p for p in info.pods if pod_key(p) == key or priority_of(p) >= priority]
        trial = snapshot._replace_node(snapshot._index[info.name], NodeInfo.build(info.node, keep))  # type: ignore[attr-defined]
        if not _fits(pod, trial.get(info.name), trial, filters, states, reprepare):
            continue
        # Most important first: higher priority, then the older.
        lower.sort(key=lambda p: (-priority_of(p), _start_time(p)))
        would_violate = _violations(lower, budgets)
        victims: list[Obj] = []
        for group in ([p for p in lower if pod_key(p) in would_violate],
                      [p for p in lower if pod_key(p) not in would_violate]):
            for p in group:
                attempt = NodeInfo.build(info.node, keep + [p])
                trial2 = trial._replace_node(trial._index[info.name], attempt)  # type: ignore[attr-defined]
                if _fits(pod, attempt, trial2, filters, states, reprepare):
                    keep.append(p)
                    trial = trial2
                else:
                    victims.append(p)
        violating = _violations(victims, budgets)
        prios = [priority_of(v) for v in victims]
        rank = (len(violating), max(prios, default=0), sum(prios), len(victims), order)
        if best is None or rank < best[0]:
            best = (rank, Candidate(info.name, tuple(victims), len(violating), frozenset(violating)))
    return best[1] if best else None


def budgets_from(pdbs: Iterable[Obj], pods: Iterable[Obj]) -> list[Budget]:
    """Budgets from PodDisruptionBudget objects. status.disruptionsAllowed when the disruption controller
    has written it; else computed here from the bound, running pods it covers (minAvailable or
    maxUnavailable, integers or percentages)."""
    pods = list(pods)
    out = []
    for pdb in pdbs:
        meta, spec, status = pdb.get("metadata") or {}, pdb.get("spec") or {}, pdb.get("status") or {}
        ns = meta.get("namespace") or "default"
        selector = sel.LabelSelector.from_object(spec.get("selector"))
        if "disruptionsAllowed" in status and status.get("observedGeneration") is not None:
            allowed = int(status["disruptionsAllowed"])
        else:
            covered = [p for p in pods if (p.get("metadata") or {}).get("namespace") == ns
                       and not selector.empty and selector.matches((p.get("metadata") or {}).get("labels"))
                       and (p.get("spec") or {}).get("nodeName")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            total = len(covered)
            if spec.get("minAvailable") is not None:
                allowed = total - _scaled(spec["minAvailable"], total, up=True)
            elif spec.get("maxUnavailable") is not None:
                allowed = _scaled(spec["maxUnavailable"], total, up=False)
            else:
                allowed = total
        out.append(Budget(ns, selector, max(allowed, 0)))
    return out


def _scaled(value: Any, total: int, *, up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        share = int(value[:-1]) * total
        return -(-share // 100) if up else share // 100
    return int(value)
