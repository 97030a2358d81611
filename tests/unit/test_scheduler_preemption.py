"""Preemption's choice of node and victims, on snapshots."""
import pytest

from eventplane.objects import selectors as sel
from reconcilers.scheduler.preemption import Budget, budgets_from, select
from reconcilers.scheduler.resources import Snapshot, pod_key
from tests.unit.test_scheduler_filters import node, on, pod


def prio(p):
    return int(p["spec"].get("priority") or 0)


def with_priority(p, value, **meta):
    p["spec"]["priority"] = value
    p["metadata"].update(meta)
    return p


def victims(candidate):
    return sorted(pod_key(v).split("/")[1] for v in candidate.victims)


def test_the_minimal_set_of_the_lowest_priorities_goes():
    bound = [on("n1", with_priority(pod(name, cpu="1"), value)) for name, value in
             (("keep-a", 100), ("keep-b", 100), ("low-a", 10), ("low-b", 10))]
    snapshot = Snapshot.build([node("n1", cpu="4")], bound)
    c = select(with_priority(pod("vip", cpu="2"), 1000), snapshot, priority_of=prio)
    assert c.node == "n1" and victims(c) == ["low-a", "low-b"] and c.pdb_violations == 0


def test_only_as_many_as_needed_and_the_newer_of_equals_goes_first():
    bound = [on("n1", with_priority(pod(name, cpu="1"), 10, creationTimestamp=ts)) for name, ts in
             (("older", "2024-01-01T00:00:00Z"), ("newer", "2024-06-01T00:00:00Z"))]
    snapshot = Snapshot.build([node("n1", cpu="2")], bound)
    c = select(with_priority(pod("vip", cpu="1"), 1000), snapshot, priority_of=prio)
    assert victims(c) == ["newer"]


def test_equal_or_higher_priorities_are_never_victims():
    bound = [on("n1", with_priority(pod("peer", cpu="2"), 1000))]
    snapshot = Snapshot.build([node("n1", cpu="2")], bound)
    assert select(with_priority(pod("vip", cpu="1"), 1000), snapshot, priority_of=prio) is None


def test_nodes_no_eviction_can_cure_are_skipped():
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    snapshot = Snapshot.build([node("tainted", cpu="2", taints=[taint]), node("ok", cpu="2")],
                              [on("tainted", with_priority(pod("a", cpu="2"), 0)),
                               on("ok", with_priority(pod("b", cpu="2"), 0))])
    c = select(with_priority(pod("vip", cpu="2"), 10), snapshot, priority_of=prio)
    assert c.node == "ok" and victims(c) == ["b"]


def test_preemption_policy_never():
    snapshot = Snapshot.build([node("n1", cpu="1")], [on("n1", with_priority(pod("a", cpu="1"), 0))])
    p = with_priority(pod("vip", cpu="1"), 10)
    p["spec"]["preemptionPolicy"] = "Never"
    assert select(p, snapshot, priority_of=prio) is None


def test_the_node_whose_victims_matter_least_wins():
    snapshot = Snapshot.build([node("n1", cpu="2"), node("n2", cpu="2")],
                              [on("n1", with_priority(pod("mid", cpu="2"), 50)),
                               on("n2", with_priority(pod("low", cpu="2"), 5))])
    c = select(with_priority(pod("vip", cpu="2"), 100), snapshot, priority_of=prio)
    assert c.node == "n2" and victims(c) == ["low"]


def test_a_node_without_pdb_violations_is_preferred_over_lower_priorities_elsewhere():
    guarded = {"app": "guarded"}
    snapshot = Snapshot.build([node("n1", cpu="2"), node("n2", cpu="2")],
                              [on("n1", with_priority(pod("g", cpu="2", labels=guarded), 1)),
                               on("n2", with_priority(pod("free", cpu="2"), 50))])
    budget = Budget("default", sel.LabelSelector.from_object({"matchLabels": guarded}), 0)
    c = select(with_priority(pod("vip", cpu="2"), 100), snapshot, priority_of=prio, budgets=[budget])
    assert c.node == "n2" and c.pdb_violations == 0
    only = Snapshot.build([node("n1", cpu="2")], [on("n1", with_priority(pod("g", cpu="2", labels=guarded), 1))])
    c = select(with_priority(pod("vip", cpu="2"), 100), only, priority_of=prio, budgets=[budget])
    assert c.node == "n1" and c.pdb_violations == 1 and c.violating == {"default/g"}


@pytest.mark.parametrize("spec, status, allowed", [
    ({"minAvailable": 2}, {}, 1),
    ({"maxUnavailable": 1}, {}, 1),
    ({"minAvailable": "50%"}, {}, 1),
    ({"minAvailable": 3}, {}, 0),
    ({"minAvailable": 1}, {"disruptionsAllowed": 0, "observedGeneration": 1}, 0),
])
def test_budgets_from_pdbs(spec, status, allowed):
    pods = [on("n1", pod(f"w{i}", labels={"app": "w"})) for i in range(3)]
    pdb = {"metadata": {"name": "b", "namespace": "default"},
           "spec": {"selector": {"matchLabels": {"app": "w"}}, **spec}, "status": status}
    [budget] = budgets_from([pdb], pods)
    assert budget.disruptions_allowed == allowed and budget.covers(pods[0])
