"""ReplicaSet decisions and the shared pod helpers, table-style, without a server."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from eventplane.objects.selectors import LabelSelector
from reconcilers.controllers.podcontrol import (Expectations, active_pods_sort_key, claim, controller_ref,
                                                is_pod_available, pod_from_template, selector_of,
                                                slow_start, slow_start_batches)
from reconcilers.controllers.replicaset import (manage_replicas, pods_to_delete, replica_set_status,
                                                requeue_for_availability, status_changed)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, node: str = "", phase: str = "Pending", ready: bool = False, ready_for: float = 100,
        age: float = 100, restarts: int = 0, labels: dict | None = None, owner: str | None = None,
        deleting: bool = False, cost: int | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": ts(age),
                  "labels": {"app": "web"} if labels is None else labels, "resourceVersion": "1"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                    "uid": f"uid-{owner}", "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = ts(1)
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    status: dict = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(ready_for)}]}
    if restarts:
        status["containerStatuses"] = [{"name": "c", "restartCount": restarts}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": status}


def rs(name: str = "web", *, replicas: int = 3, min_ready: int = 0, generation: int = 1,
       status: dict | None = None, deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = ts(1)
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": status or {}}


# --- which pods go first ---------------------------------------------------------------------------

ORDER_CASES = [
    # (case, pod that must be deleted first, the other)
    ("unscheduled before scheduled", pod("a"), pod("b", node="n1")),
    ("pending before running", pod("a", node="n1", phase="Pending"), pod("b", node="n1", phase="Running")),
    ("unknown before running", pod("a", node="n1", phase="Unknown"), pod("b", node="n1", phase="Running")),
    ("not ready before ready", pod("a", node="n1", phase="Running"),
     pod("b", node="n1", phase="Running", ready=True)),
    ("lower deletion cost first", pod("a", node="n1", phase="Running", ready=True, cost=-5),
     pod("b", node="n1", phase="Running", ready=True)),
    ("ready for less time first", pod("a", node="n1", phase="Running", ready=True, ready_for=10),
     pod("b", node="n1", phase="Running", ready=True, ready_for=500)),
    ("more restarts first", pod("a", node="n1", phase="Running", ready=True, restarts=3),
     pod("b", node="n1", phase="Running", ready=True)),
    ("younger before older", pod("a", node="n1", phase="Running", ready=True, age=5),
     pod("b", node="n1", phase="Running", ready=True, age=50)),
]


@pytest.mark.parametrize("case,first,second", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_active_pods_order(case, first, second):
    assert active_pods_sort_key(first) < active_pods_sort_key(second)
    assert pods_to_delete([second, first], None, 1) == [first]


def test_doubled_up_pods_go_first():
    # Same in every other respect: the pod sharing its node with more related pods goes first.
    crowded = pod("a", node="n1", phase="Running", ready=True)
    alone = pod("b", node="n2", phase="Running", ready=True)
    related = [crowded, alone, pod("c", node="n1", phase="Running", ready=True)]
    assert pods_to_delete([alone, crowded], related, 1) == [crowded]


# --- manageReplicas --------------------------------------------------------------------------------

MANAGE_CASES = [
    # (case, replicas, number of pods, burst, creates, deletes)
    ("in sync", 3, 3, 500, 0, 0),
    ("scale up", 5, 2, 500, 3, 0),
    ("scale up capped by burst", 1000, 0, 500, 500, 0),
    ("scale down", 1, 4, 500, 0, 3),
    ("scale down capped by burst", 0, 600, 500, 0, 500),
    ("to zero", 0, 2, 500, 0, 2),
]


@pytest.mark.parametrize("case,replicas,npods,burst,creates,deletes", MANAGE_CASES, ids=[c[0] for c in MANAGE_CASES])
def test_manage_replicas(case, replicas, npods, burst, creates, deletes):
    pods = [pod(f"p{i}", age=i) for i in range(npods)]
    diff = manage_replicas(rs(replicas=replicas), pods, burst=burst)
    assert diff.create == creates
    assert len(diff.delete) == deletes


def test_scale_down_deletes_the_youngest_unready_first():
    old_ready = pod("old", node="n1", phase="Running", ready=True, age=300)
    young_ready = pod("young", node="n1", phase="Running", ready=True, age=10, ready_for=5)
    unready = pod("unready", node="n1", phase="Running", age=400)
    pending = pod("pending", age=500)
    diff = manage_replicas(rs(replicas=1), [old_ready, young_ready, unready, pending])
    assert [p["metadata"]["name"] for p in diff.delete] == ["pending", "unready", "young"]


# --- status ---------------------------------------------------------------------------------------

def test_status_counts():
    pods = [pod("a", phase="Running", ready=True, ready_for=100, labels={"app": "web", "tier": "fe"}),
            pod("b", phase="Running", ready=True, ready_for=2, labels={"app": "web", "tier": "fe"}),
            pod("c", phase="Running", ready=False),
            pod("d", phase="Pending")]
    status = replica_set_status(rs(replicas=4, min_ready=10, generation=7), pods, now=NOW)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1,
                      "observedGeneration": 7}


def test_replica_failure_condition_set_and_cleared():
    failed = replica_set_status(rs(replicas=3), [], now=NOW, manage_error="quota exceeded", manage_diff=-3)
    [cond] = failed["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == \
        ("ReplicaFailure", "True", "FailedCreate", "quota exceeded")
    delete_failed = replica_set_status(rs(replicas=0), [pod("a")], now=NOW, manage_error="boom", manage_diff=1)
    assert delete_failed["conditions"][0]["reason"] == "FailedDelete"
    # the next clean sync removes it
    cleared = replica_set_status(rs(replicas=3, status=failed), [pod("a"), pod("b"), pod("c")], now=NOW)
    assert "conditions" not in cleared
    # an existing failure is not rewritten by another failure
    again = replica_set_status(rs(replicas=3, status=failed), [], now=NOW, manage_error="other", manage_diff=-3)
    assert again["conditions"] == failed["conditions"]


STATUS_CHANGED_CASES = [
    ("same", {"replicas": 3, "observedGeneration": 1}, {"replicas": 3, "observedGeneration": 1}, False),
    ("zero omitted is zero", {"observedGeneration": 1}, {"replicas": 0, "observedGeneration": 1}, False),
    ("count changed", {"replicas": 2}, {"replicas": 3}, True),
    ("generation observed", {"observedGeneration": 1}, {"observedGeneration": 2}, True),
]


@pytest.mark.parametrize("case,old,new,changed", STATUS_CHANGED_CASES, ids=[c[0] for c in STATUS_CHANGED_CASES])
def test_status_changed(case, old, new, changed):
    assert status_changed(old, new) is changed


def test_requeue_for_min_ready_seconds():
    assert requeue_for_availability(rs(replicas=2, min_ready=30),
                                     {"readyReplicas": 2, "availableReplicas": 1}) == 30.0
    assert requeue_for_availability(rs(replicas=2, min_ready=30), {"readyReplicas": 2, "availableReplicas": 2}) is None
    assert requeue_for_availability(rs(replicas=2), {"readyReplicas": 2, "availableReplicas": 1}) is None


# --- podcontrol -----------------------------------------------------------------------------------

def test_pod_from_template():
    owner = rs("web")
    p = pod_from_template(owner["spec"]["template"], owner)
    assert p["metadata"]["generateName"] == "web-"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                                 "uid": "uid-web", "controller": True, "blockOwnerDeletion": True}]
    assert p["spec"] == owner["spec"]["template"]["spec"]
    assert p["spec"] is not owner["spec"]["template"]["spec"]


CLAIM_CASES = [
    # (case, pod, owner deleting, expected: owned/adopt/release/ignored)
    ("ours and matching", pod("a", owner="web"), False, "owned"),
    ("ours, labels changed", pod("a", owner="web", labels={"app": "other"}), False, "release"),
    ("ours, not matching, owner deleting", pod("a", owner="web", labels={"app": "other"}), True, "ignored"),
    ("another controller's", pod("a", owner="other"), False, "ignored"),
    ("matching orphan", pod("a"), False, "adopt"),
    ("matching orphan, owner deleting", pod("a"), True, "ignored"),
    ("orphan being deleted", pod("a", deleting=True), False, "ignored"),
    ("orphan not matching", pod("a", labels={"app": "db"}), False, "ignored"),
]


@pytest.mark.parametrize("case,obj,deleting,expected", CLAIM_CASES, ids=[c[0] for c in CLAIM_CASES])
def test_claim(case, obj, deleting, expected):
    owner = rs("web", deleting=deleting)
    c = claim(owner, selector_of(owner), [obj])
    got = ("adopt" if c.adopt else "release" if c.release else "owned" if c.owned else "ignored")
    assert got == expected
    if expected == "adopt":
        assert c.owned == [obj]


def test_selector_of_replication_controller_is_a_label_map():
    rc = {"kind": "ReplicationController", "spec": {"selector": {"app": "web"}}}
    assert selector_of(rc).matches({"app": "web", "x": "y"})
    assert not selector_of(rc).matches({"app": "db"})
    assert selector_of({"kind": "ReplicaSet", "spec": {}}) == LabelSelector(nothing=True)


def test_controller_ref():
    assert controller_ref(rs("web")) == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                         "uid": "uid-web", "controller": True, "blockOwnerDeletion": True}


@pytest.mark.parametrize("count,batches", [(0, []), (1, [1]), (3, [1, 2]), (10, [1, 2, 4, 3]),
                                           (500, [1, 2, 4, 8, 16, 32, 64, 128, 245])])
def test_slow_start_batches(count, batches):
    assert slow_start_batches(count) == batches
    assert sum(batches) == count


async def test_slow_start_stops_after_a_failing_batch():
    calls = 0

    async def fn():
        nonlocal calls
        calls += 1
        if calls >= 3:
            raise RuntimeError("quota")

    done, error = await slow_start(100, fn)
    assert calls == 3          # batches of 1 and 2; the second batch failed once; nothing after
    assert done == 2 and isinstance(error, RuntimeError)


def test_available_needs_min_ready_seconds():
    p = pod("a", phase="Running", ready=True, ready_for=5)
    assert is_pod_available(p, 0, NOW)
    assert is_pod_available(p, 5, NOW)
    assert not is_pod_available(p, 6, NOW)
    assert not is_pod_available(pod("b", phase="Running"), 0, NOW)


def test_expectations_wait_for_the_informer_to_reach_our_writes():
    clock = [0.0]
    e = Expectations(timeout=300, clock=lambda: clock[0])
    assert e.satisfied("ns/web", "10")
    e.wrote("ns/web", {"metadata": {"resourceVersion": "15"}})
    e.wrote("ns/web", {"metadata": {"resourceVersion": "12"}})   # answers may arrive out of order
    assert e.pending("ns/web") == 15
    assert not e.satisfied("ns/web", "14")
    assert e.satisfied("ns/web", "15")
    assert e.pending("ns/web") is None
    e.wrote("ns/web", 20)
    clock[0] = 301.0   # a lost watch event cannot wedge the controller
    assert e.satisfied("ns/web", "16")
