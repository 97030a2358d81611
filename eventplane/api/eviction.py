"""pods/eviction: a delete that respects PodDisruptionBudgets, as kube-apiserver's eviction REST does.

Fed by subresources.py with the Eviction body. Before deleting the pod it
finds the PDB whose selector matches the pod and, unless the pod can ignore
budgets (not Running, or already being deleted), takes one disruption from
the budget's status: `disruptionsAllowed` minus one and the pod recorded in
`disruptedPods`, written through the status subresource with the status's
resourceVersion (a conflict re-reads and decides again). The disruption
controller (reconcilers/controllers/disruption.py) computes that status and
drops recorded pods once they are gone. A budget with nothing to give answers
429 TooManyRequests with Kubernetes' message.
"""
from __future__ import annotations

import copy
from typing import Any

from eventplane.objects import errors
from eventplane.objects.schema import Catalog, ResourceInfo
from eventplane.objects.selectors import LabelSelector

from . import strategy

MAX_CONFLICT_RETRIES = 5
MAX_DISRUPTED_PODS = 2000  # kube-apiserver's MaxDisruptedPodSize
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def can_ignore_pdb(pod: dict[str, Any]) -> bool:
    """Pods that are not running (yet or any more), or already going, are evicted without a budget."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def matching(pdbs: list[dict[str, Any]], pod: dict[str, Any]) -> list[dict[str, Any]]:
    """policy/v1: an empty selector matches every pod of the namespace, a missing one none."""
    labels = pod["metadata"].get("labels") or {}
    out = []
    for pdb in pdbs:
        try:
            selector = LabelSelector.from_object((pdb.get("spec") or {}).get("selector"))
        except errors.BadRequestError:
            continue
        if selector.matches(labels):
            out.append(pdb)
    return out


def unhealthy_may_go(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    """unhealthyPodEvictionPolicy: a pod that is not Ready does not count against the budget when
    the policy is AlwaysAllow, or (IfHealthyBudget, the default) when the budget is already met."""
    if pod_ready(pod):
        return False
    status = pdb.get("status") or {}
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    desired = status.get("desiredHealthy", 0)
    return desired > 0 and status.get("currentHealthy", 0) >= desired


def take_disruption(pdb: dict[str, Any], pod_name: str, now: str) -> dict[str, Any]:
    """The budget after evicting `pod_name`, or the error kube-apiserver answers (checkAndDecrement)."""
    name = pdb["metadata"]["name"]
    status = pdb.get("status") or {}
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 0):
        raise errors.TooManyRequestsError(VIOLATION, causes=(errors.Cause(
            "DisruptionBudget", f"The disruption budget {name} is still being processed by the server."),))
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise errors.ForbiddenError(f'poddisruptionbudget.policy "{name}" is forbidden: pdb disruptions allowed '
                                    "is negative", name=name, group="policy", kind="poddisruptionbudgets")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.ForbiddenError(f'poddisruptionbudget.policy "{name}" is forbidden: DisruptedPods map too '
                                    "big - too many evictions not confirmed by PDB controller",
                                    name=name, group="policy", kind="poddisruptionbudgets")
    if allowed == 0:
        raise errors.TooManyRequestsError(VIOLATION, causes=(errors.Cause(
            "DisruptionBudget", f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy "
                                f"pods and has {status.get('currentHealthy', 0)} currently"),))
    new = copy.deepcopy(pdb)
    st = new.setdefault("status", {})
    st["disruptionsAllowed"] = allowed - 1
    if st["disruptionsAllowed"] == 0:
        set_allowed_condition(st, now)
    st.setdefault("disruptedPods", {})[pod_name] = now
    return new


def set_allowed_condition(status: dict[str, Any], now: str) -> None:
    """The DisruptionAllowed condition for the status's disruptionsAllowed (pdbhelper's
    UpdateDisruptionAllowedCondition); the transition time moves only when the status does."""
    allowed = status.get("disruptionsAllowed", 0) > 0
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
            "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
            "observedGeneration": status.get("observedGeneration", 0)}
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == cond["status"] \
        and old.get("lastTransitionTime") else now
    status["conditions"] = conditions + [cond]


async def evict(registry, catalog: Catalog, info: ResourceInfo, namespace: str, name: str, body: Any, caller,
                opts) -> None:
    pod = await registry.get(info, namespace, name)
    pdb_info = catalog.get("policy", "v1", "poddisruptionbudgets")
    if pdb_info is not None and not can_ignore_pdb(pod):
        for attempt in range(MAX_CONFLICT_RETRIES):
            pdbs = matching((await registry.list(pdb_info, namespace))["items"], pod)
            if not pdbs:
                break
            if len(pdbs) > 1:
                raise errors.EventplaneError("This pod has more than one PodDisruptionBudget, which the eviction "
                                             "subresource does not support.")
            pdb = pdbs[0]
            if unhealthy_may_go(pdb, pod):
                break
            new = take_disruption(pdb, name, strategy.now_rfc3339())
            if opts.dry_run:
                break
            try:
                await registry.update(pdb_info, namespace, pdb["metadata"]["name"], new, caller, opts,
                                      subresource="status")
                break
            except errors.ConflictError:
                if attempt + 1 == MAX_CONFLICT_RETRIES:
                    raise
    await registry.delete(info, namespace, name, (body or {}).get("deleteOptions") or {}, caller, opts)
