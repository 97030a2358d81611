"""PodDisruptionBudget status (the disruption controller) and the eviction's budget check, table-style."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from eventplane.api import eviction
from eventplane.objects import errors
from reconcilers.controllers.disruption import Scale, budget_status, same_status, scaled_value

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pdb(spec: dict, *, status: dict | None = None, generation: int = 2) -> dict:
    return {"metadata": {"name": "db", "namespace": "default", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, **spec}, "status": status or {}}


def pod(name: str, *, ready: bool = True, deleting: bool = False, owner: str | None = "rs1",
        labels: dict | None = None) -> dict:
    meta = {"name": name, "namespace": "default", "labels": labels if labels is not None else {"app": "db"}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = stamp(NOW)
    return {"metadata": meta, "status": {"phase": "Running",
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


THREE = [pod("a"), pod("b"), pod("c", ready=False)]
SCALE = Scale({"rs1": ("deploy1", 4)})

CASES = [
    # name, spec, pods, (expected, desired, healthy, allowed)
    ("minAvailable number counts matching pods", {"minAvailable": 1}, THREE, (3, 1, 2, 1)),
    ("minAvailable met exactly: nothing allowed", {"minAvailable": 2}, THREE, (3, 2, 2, 0)),
    ("minAvailable percent: of the controller's replicas, rounded up", {"minAvailable": "50%"}, THREE, (4, 2, 2, 0)),
    ("maxUnavailable number", {"maxUnavailable": 1}, THREE, (4, 3, 2, 0)),
    ("maxUnavailable percent rounds the unavailable up", {"maxUnavailable": "30%"}, [pod("a"), pod("b"), pod("c")],
     (4, 2, 3, 1)),
    ("deleting pods and other labels are not healthy or not counted", {"minAvailable": 1},
     [pod("a"), pod("b", deleting=True), pod("x", labels={"app": "web"})], (2, 1, 1, 0)),
    ("no pods: nothing allowed", {"minAvailable": 0}, [], (0, 0, 0, 0)),
    ("neither field: no pod protected", {}, THREE, (0, 0, 2, 0)),
]


@pytest.mark.parametrize("name,spec,pods,expected", CASES, ids=[c[0] for c in CASES])
def test_budget_status(name, spec, pods, expected):
    st = budget_status(pdb(spec), pods, SCALE, NOW).status
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == expected
    assert st["observedGeneration"] == 2
    [cond] = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        ("DisruptionAllowed", "True", "SufficientPods") if expected[3] else
        ("DisruptionAllowed", "False", "InsufficientPods"))


def test_recently_disrupted_pods_do_not_count_until_they_expire():
    recent, old = stamp(NOW - timedelta(seconds=30)), stamp(NOW - timedelta(minutes=3))
    out = budget_status(pdb({"minAvailable": 1}, status={"disruptedPods": {"a": recent, "b": old}}),
                        [pod("a"), pod("b"), pod("c")], SCALE, NOW)
    assert out.status["disruptedPods"] == {"a": recent}
    assert out.status["currentHealthy"] == 2 and out.status["disruptionsAllowed"] == 1
    assert out.recheck == NOW - timedelta(seconds=30) + timedelta(minutes=2)


def test_a_pod_without_a_known_controller_fails_safe():
    st = budget_status(pdb({"maxUnavailable": 1}), [pod("a", owner="unknown")], SCALE, NOW).status
    assert st["disruptionsAllowed"] == 0
    assert (st["conditions"][0]["reason"], st["conditions"][0]["message"]) == (
        "SyncFailed", 'found no controllers for pod "a"')


def test_scale_counts_a_controller_once_and_ignores_unmanaged_pods():
    s = Scale({"rs1": ("deploy1", 4), "rs2": ("deploy1", 4), "sts": ("sts", 3)})
    pods = [pod("a", owner="rs1"), pod("b", owner="rs2"), pod("c", owner="sts"), pod("d", owner=None)]
    assert s.expected(pods) == 7


@pytest.mark.parametrize("value,total,expected", [(2, 10, 2), ("50%", 5, 3), ("0%", 5, 0), ("100%", 3, 3)])
def test_scaled_value(value, total, expected):
    assert scaled_value(value, total) == expected


def test_same_status_ignores_transition_times():
    a = budget_status(pdb({"minAvailable": 1}), THREE, SCALE, NOW).status
    b = budget_status(pdb({"minAvailable": 1}), THREE, SCALE, NOW + timedelta(hours=1)).status
    assert same_status(a, b) and not same_status(a, {**b, "currentHealthy": 3})


# --- the eviction's side (eventplane/api/eviction.py) ---

def test_take_disruption():
    budget = pdb({"minAvailable": 1}, status={"observedGeneration": 2, "disruptionsAllowed": 1, "currentHealthy": 2,
                                              "desiredHealthy": 1})
    new = eviction.take_disruption(budget, "a", "2026-01-01T00:00:00Z")
    assert new["status"]["disruptionsAllowed"] == 0 and new["status"]["disruptedPods"] == {"a": "2026-01-01T00:00:00Z"}
    assert new["status"]["conditions"][0]["status"] == "False"
    assert budget["status"]["disruptionsAllowed"] == 1  # not changed in place
    with pytest.raises(errors.TooManyRequestsError) as e:
        eviction.take_disruption(new, "b", "2026-01-01T00:00:00Z")
    assert e.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert e.value.causes[0].message == "The disruption budget db needs 1 healthy pods and has 2 currently"
    with pytest.raises(errors.TooManyRequestsError):  # not observed yet
        eviction.take_disruption(pdb({}, status={"observedGeneration": 1, "disruptionsAllowed": 5}), "a", "t")
    with pytest.raises(errors.ForbiddenError):
        eviction.take_disruption(pdb({}, status={"observedGeneration": 2, "disruptionsAllowed": -1}), "a", "t")


def test_eviction_ignores_budgets_for_pods_not_running_and_lets_unhealthy_pods_go():
    assert eviction.can_ignore_pdb({"metadata": {}, "status": {"phase": "Pending"}})
    assert not eviction.can_ignore_pdb(pod("a"))
    healthy_budget = pdb({}, status={"currentHealthy": 2, "desiredHealthy": 2})
    assert eviction.unhealthy_may_go(healthy_budget, pod("c", ready=False))
    assert not eviction.unhealthy_may_go(healthy_budget, pod("a"))
    assert not eviction.unhealthy_may_go(pdb({}, status={"currentHealthy": 1, "desiredHealthy": 2}),
                                         pod("c", ready=False))
    assert eviction.unhealthy_may_go(pdb({"unhealthyPodEvictionPolicy": "AlwaysAllow"},
                                         status={"currentHealthy": 1, "desiredHealthy": 2}), pod("c", ready=False))
    assert [p["metadata"]["name"] for p in eviction.matching([pdb({})], pod("a"))] == ["db"]
    assert eviction.matching([pdb({"selector": None})], pod("a")) == []
    assert len(eviction.matching([pdb({"selector": {}})], pod("a", labels={}))) == 1
