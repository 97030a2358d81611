"""The DaemonSet controller's decisions, table-style, without a server."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from reconcilers.controllers import daemonset as D

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
UID = "ds-uid"
OWNER = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": UID, "controller": True}]


def ds(*, image="agent:1", status=None, template_spec=None, **spec):
    s = {"selector": {"matchLabels": {"app": "agent"}},
         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
         "template": {"metadata": {"labels": {"app": "agent"}},
                      "spec": {"containers": [{"name": "c", "image": image}], **(template_spec or {})}}}
    s.update(spec)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": UID, "generation": 1},
            "spec": s, "status": status or {}}


def node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []}}


def hash_of(d):
    return D.decide(d, [], [], [], NOW).create_revision["metadata"]["labels"]["controller.kubernetes.io/hash"]


def revision_of(d):
    return copy.deepcopy(D.decide(d, [], [], [], NOW).create_revision)


H1 = hash_of(ds())


def pod(name, node_name, *, h=H1, ready=True, phase="Running", deleting=False, created="2026-01-01T10:00:00Z"):
    p = {"metadata": {"name": name, "namespace": "kube-system", "uid": f"u-{name}", "ownerReferences": OWNER,
                      "labels": {"app": "agent", D.REVISION: h}, "creationTimestamp": created},
         "spec": {"nodeName": node_name},
         "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return p


def created_on(plan):
    return sorted(D.pinned_to(p) for p in plan.create)


NOEXEC = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
NOSCHED = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}

CASES = [
    # name, set, nodes, pods, created on nodes, deleted pods
    ("one pod per node", ds(), [node("a"), node("b")], [], ["a", "b"], []),
    ("nodes with a pod get none", ds(), [node("a"), node("b")], [pod("p", "a")], ["b"], []),
    ("nodeSelector", ds(template_spec={"nodeSelector": {"disk": "ssd"}}),
     [node("a", {"disk": "ssd"}), node("b")], [], ["a"], []),
    ("required node affinity", ds(template_spec={"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
     [node("a", {"zone": "z1"}), node("b", {"zone": "z2"})], [], ["a"], []),
    ("an untolerated taint keeps pods off", ds(), [node("a", taints=[NOSCHED])], [], [], []),
    ("a tolerated taint does not", ds(template_spec={"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
     [node("a", taints=[NOEXEC])], [], ["a"], []),
    ("default tolerations: unschedulable and not-ready nodes still run daemons", ds(),
     [node("a", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])], [], ["a"], []),
    ("NoSchedule added later: the pod stays", ds(), [node("a", taints=[NOSCHED])], [pod("p", "a")], [], []),
    ("NoExecute added later: the pod goes", ds(), [node("a", taints=[NOEXEC])], [pod("p", "a")], [], ["p"]),
    ("a node that left: its pod goes", ds(), [node("a")], [pod("p", "a"), pod("q", "gone")], [], ["q"]),
    ("two pods on a node: the newer goes", ds(), [node("a")],
     [pod("old", "a"), pod("new", "a", created="2026-01-01T11:00:00Z")], [], ["new"]),
    ("a failed pod is replaced", ds(), [node("a")], [pod("p", "a", phase="Failed")], ["a"], ["p"]),
    ("wait for a pod going away", ds(), [node("a")], [pod("p", "a", deleting=True)], [], []),
]


@pytest.mark.parametrize("name,d,nodes,pods,create,delete", CASES, ids=[c[0] for c in CASES])
def test_decide(name, d, nodes, pods, create, delete):
    plan = D.decide(d, nodes, pods, [revision_of(d)], NOW)
    assert created_on(plan) == create
    assert sorted(plan.delete) == delete


def test_pod_is_pinned_and_tolerant():
    plan = D.decide(ds(template_spec={"hostNetwork": True}), [node("a")], [], [], NOW)
    p = plan.create[0]
    assert p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}
    keys = {(t["key"], t["effect"]) for t in p["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    assert p["metadata"]["generateName"] == "agent-" and p["metadata"]["labels"][D.GENERATION] == "1"
    assert p["metadata"]["labels"][D.REVISION] == plan.create_revision["metadata"]["labels"][
        "controller.kubernetes.io/hash"]
    assert "nodeName" not in p["spec"]


NODES = [node(n) for n in "abcd"]
OLD = [pod(f"p-{n}", n) for n in "abcd"]


@pytest.mark.parametrize("name,rolling,pods,create,delete", [
    ("maxUnavailable 1: one old pod at a time", {"maxUnavailable": 1}, OLD, [], ["p-a"]),
    ("maxUnavailable 50%: two", {"maxUnavailable": "50%"}, OLD, [], ["p-a", "p-b"]),
    ("an unavailable old pod counts against the budget", {"maxUnavailable": 1},
     [*OLD[:3], pod("p-d", "d", ready=False)], [], ["p-d"]),
    ("maxSurge 1: a new pod beside the old one first", {"maxSurge": 1, "maxUnavailable": 0}, OLD, ["a"], []),
])
def test_rolling_update(name, rolling, pods, create, delete):
    d = ds(image="agent:2", updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling})
    plan = D.decide(d, NODES, pods, [revision_of(ds())], NOW)
    assert created_on(plan) == create
    assert sorted(plan.delete) == delete


def test_surge_pod_ready_then_old_goes():
    d = ds(image="agent:2", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                                     "maxUnavailable": 0}})
    h2 = hash_of(d)
    pods = [*OLD, pod("n-a", "a", h=h2, created="2026-01-01T11:00:00Z")]
    plan = D.decide(d, NODES, pods, [revision_of(ds())], NOW)
    assert plan.delete == ["p-a"] and created_on(plan) == []   # the surge slot is in use until p-a is gone


def test_on_delete_never_deletes_for_an_update():
    d = ds(image="agent:2", updateStrategy={"type": "OnDelete"})
    plan = D.decide(d, NODES, OLD, [revision_of(ds())], NOW)
    assert plan.delete == [] and plan.create == []


def test_status():
    d = ds()
    pods = [pod("p-a", "a"), pod("p-b", "b", ready=False), pod("p-x", "x")]
    plan = D.decide(d, [node("a"), node("b"), node("c"), node("x", taints=[NOSCHED])], pods, [revision_of(d)], NOW)
    st = plan.status
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"],
            st["updatedNumberScheduled"], st["numberAvailable"], st["numberUnavailable"],
            st["numberMisscheduled"]) == (3, 2, 1, 2, 1, 2, 1)


def test_failed_pods_are_replaced_after_a_backoff():
    from datetime import timedelta

    d = ds()
    failed = [pod("p", "a", phase="Failed")]
    plan = D.decide(d, [node("a")], failed, [revision_of(d)], NOW, backoff={"a": NOW + timedelta(seconds=4)})
    assert plan.delete == [] and plan.create == [] and plan.requeue_after == 4
    assert plan.status["desiredNumberScheduled"] == 1
    plan = D.decide(d, [node("a")], failed, [revision_of(d)], NOW, backoff={"a": NOW - timedelta(seconds=1)})
    assert plan.delete == ["p"] and created_on(plan) == ["a"] and plan.failed_on == ["a"]
