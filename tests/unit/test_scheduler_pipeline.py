"""The pipeline end to end on snapshots: decisions, messages, explanations and Borg's optimizations."""
import copy
from collections import Counter

import pytest

from reconcilers.scheduler import (BIN_PACKING_PROFILE, Cache, Options, Snapshot, event, explain, nodes_to_find,
                                   plan, schedule)
from tests.unit.test_scheduler_filters import ZONE, anti, node, on, pod, spread

TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def zoned(count, zones=3, **kw):
    return [node(f"n{i:04d}", zone="abc"[i % zones], **kw) for i in range(count)]


def replicas(count, **kw):
    return [pod(f"web-{i}", labels={"app": "web"}, owner="web", **kw) for i in range(count)]


def fingerprint(decisions):
    """What a decision says, without whether a cache supplied it."""
    return [(d.node, d.start, d.next_start, [(r.node, r.reasons, r.total, [(s.name, s.score) for s in r.scores])
                                              for r in d.results]) for d in decisions]


# --- messages and explanations ----------------------------------------------------------------------

def test_aggregate_message_counts_reasons_sorted_as_kube_does():
    nodes = [node(f"small-{i}", cpu="1") for i in range(60)] + [node(f"gpu-{i}", taints=[TAINT]) for i in range(40)]
    d = schedule(pod(cpu="1500m"), Snapshot.build(nodes))
    assert d.node is None
    # kube sorts the whole "COUNT REASON" strings (sort.Strings), so "40 node(s)…" precedes "60 Insufficient…".
    assert event(d) == ("Warning", "FailedScheduling", "0/100 nodes are available: 40 node(s) had untolerated "
                                                       "taint {dedicated: gpu}, 60 Insufficient cpu.")


def test_message_counts_every_resource_shortage_of_a_node():
    d = schedule(pod(cpu="3", memory="8Gi"), Snapshot.build([node("a"), node("b", cpu="4")]))
    assert event(d).message == "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."


def test_no_nodes():
    assert event(schedule(pod(), Snapshot.build([]))).message == "no nodes available to schedule pods"


def test_success_event_and_explanation():
    nodes = [node("busy", cpu="4"), node("idle", cpu="4"), node("tainted", taints=[TAINT])]
    d = schedule(pod(cpu="1"), Snapshot.build(nodes, [on("busy", pod("x", cpu="2"))]))
    assert d.node == "idle"
    assert event(d) == ("Normal", "Scheduled", "Successfully assigned default/p to idle")
    text = explain(d)
    assert "Decision: scheduled to idle" in text
    assert "idle: feasible, total" in text and "<- chosen" in text
    assert "tainted: infeasible" in text
    assert "filter TaintToleration: failed: node(s) had untolerated taint {dedicated: gpu}" in text
    assert "score  NodeResourcesLeastAllocated:" in text
    assert text.index("idle:") < text.index("busy:") < text.index("tainted:")  # ranked by total


# --- placements --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cpu, placed", [
    pytest.param("2", "n1", id="fits-exactly"),
    pytest.param("2001m", None, id="one-millicore-too-much"),
])
def test_requests_fit_exactly_or_not(cpu, placed):
    assert schedule(pod(cpu=cpu), Snapshot.build([node("n1", cpu="2")])).node == placed


def test_taint_with_and_without_toleration():
    snapshot = Snapshot.build([node("gpu", taints=[TAINT])])
    assert schedule(pod(), snapshot).node is None
    assert schedule(pod(tolerations=[{"key": "dedicated", "operator": "Exists"}]), snapshot).node == "gpu"


def test_preferred_affinity_picks_the_preferred_node():
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    nodes = [node("hdd", labels={"disk": "hdd"}), node("ssd", labels={"disk": "ssd"})]
    assert schedule(pod(affinity=affinity), Snapshot.build(nodes)).node == "ssd"


def test_anti_affinity_spreads_replicas_one_per_node():
    nodes = [node(f"n{i}") for i in range(3)]
    decisions, _ = plan(replicas(4, affinity=anti(app="web")), Snapshot.build(nodes))
    assert sorted(d.node for d in decisions[:3]) == ["n0", "n1", "n2"]
    assert decisions[3].node is None
    assert event(decisions[3]).message == \
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."


def test_topology_spread_across_three_zones_with_max_skew_1():
    # Bin packing would stack everything on one node; the constraint forces 2 per zone.
    decisions, final = plan(replicas(6, cpu="100m", spread=spread(1, app="web")), Snapshot.build(zoned(6)),
                            BIN_PACKING_PROFILE)
    zones = Counter(final.get(d.node).labels[ZONE] for d in decisions)
    assert zones == {"a": 2, "b": 2, "c": 2}


def test_default_spreading_puts_a_replica_sets_pods_in_every_zone():
    decisions, final = plan(replicas(6, cpu="100m"), Snapshot.build(zoned(9)))
    assert Counter(final.get(d.node).labels[ZONE] for d in decisions) == {"a": 2, "b": 2, "c": 2}
    assert len({d.node for d in decisions}) == 6


def test_host_port_conflicts():
    decisions, _ = plan([pod(f"p{i}", host_port=8080) for i in range(3)], Snapshot.build([node("a"), node("b")]))
    assert [d.node is not None for d in decisions] == [True, True, False]
    assert event(decisions[2]).message == \
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."


def test_plan_leaves_the_given_snapshot_alone():
    snapshot = Snapshot.build([node("a")])
    before = copy.deepcopy(snapshot.nodes[0].node), snapshot.nodes[0].pods
    _, after = plan(replicas(3, cpu="100m"), snapshot)
    assert (snapshot.nodes[0].node, snapshot.nodes[0].pods) == before
    assert len(after.get("a").pods) == 3 and after.get("a").requested["cpu"] == 300


# --- Borg's optimizations ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_nodes, expected", [
    pytest.param(5, 5, id="few-nodes-all"),
    pytest.param(99, 99, id="under-100-all"),
    pytest.param(150, 100, id="at-least-100"),  # 49% of 150 = 73 → 100
    pytest.param(1000, 420, id="1000-nodes-42-percent"),
    pytest.param(5000, 500, id="5000-nodes-10-percent"),
    pytest.param(10000, 500, id="floor-of-5-percent"),
])
def test_nodes_to_find_formula(num_nodes, expected):
    assert nodes_to_find(num_nodes) == expected


def test_nodes_to_find_configured_percentage():
    assert nodes_to_find(1000, 30) == 300 and nodes_to_find(1000, 100) == 1000 and nodes_to_find(1000, 1) == 100


def test_relaxed_randomization_examines_only_enough_nodes_and_rotates():
    snapshot = Snapshot.build(zoned(1000))
    first = schedule(pod(cpu="100m"), snapshot, start=0)
    assert len(first.results) == 420 and len(first.feasible) == 420
    assert (first.start, first.next_start) == (0, 420)
    second = schedule(pod(cpu="100m"), snapshot, start=first.next_start)
    assert second.results[0].node == "n0420" and second.next_start == 840
    third = schedule(pod(cpu="100m"), snapshot, start=second.next_start)
    assert third.results[0].node == "n0840" and third.next_start == 260  # wraps around
    assert "580 node(s) not examined" in explain(first)
    everything = schedule(pod(cpu="100m"), snapshot, options=Options(relaxed_randomization=False), start=420)
    assert len(everything.results) == 1000 and everything.start == 0


def test_relaxed_randomization_keeps_looking_past_infeasible_nodes():
    nodes = [node(f"n{i:04d}", cpu="1" if i < 900 else "8") for i in range(1000)]
    d = schedule(pod(cpu="2"), Snapshot.build(nodes))
    assert len(d.feasible) == 100 and len(d.results) == 1000 and d.node is not None


def test_equivalence_classes_give_the_same_decisions_as_without():
    pods = replicas(20, cpu="500m", affinity=anti(app="web")) + \
        [pod(f"free-{i}", cpu="250m", tolerations=[{"operator": "Exists"}]) for i in range(10)] + \
        replicas(6, cpu="1", spread=spread(1, app="web"))
    nodes = zoned(30, cpu="4") + [node("gpu", zone="a", taints=[TAINT])]
    snapshot = Snapshot.build(nodes)
    off = Options(equivalence_classes=False, score_cache=False, relaxed_randomization=False)
    on_ = Options(relaxed_randomization=False)
    plain, _ = plan(pods, snapshot, options=off)
    cache = Cache()
    shared, _ = plan(pods, snapshot, options=on_, cache=cache)
    assert fingerprint(plain) == fingerprint(shared)
    assert all(d.node is not None for d in plain)
    assert cache.filter_hits > 0 and cache.score_hits > 0
    uncached = Cache()
    plan(pods, snapshot, options=off, cache=uncached)
    assert cache.filter_runs < uncached.filter_runs and cache.score_runs < uncached.score_runs


def test_equivalence_class_key_separates_what_matters():
    from reconcilers.scheduler import equivalence_class
    base = pod(cpu="1", owner="rs")
    assert equivalence_class(base) == equivalence_class({**pod("other-name", cpu="1000m", owner="rs")})
    for different in (pod(cpu="2", owner="rs"), pod(cpu="1", owner="rs2"), pod(cpu="1", owner="rs", host_port=80),
                      pod(cpu="1", owner="rs", tolerations=[{"operator": "Exists"}]),
                      pod(cpu="1", owner="rs", node_selector={"a": "b"}), pod(cpu="1", owner="rs", labels={"x": "y"}),
                      pod(cpu="1", owner="rs", spread=spread(1, app="web")), pod(cpu="1", owner="rs", namespace="x")):
        assert equivalence_class(different) != equivalence_class(base)


def test_score_cache_is_invalidated_per_node_when_the_node_changes():
    snapshot = Snapshot.build([node("a"), node("b"), node("c")])
    cache = Cache()
    p = pod("p", cpu="500m")
    first = schedule(p, snapshot, cache=cache)
    assert cache.score_hits == 0
    changed = snapshot.with_pod(pod("q", cpu="1"), first.node)
    second = schedule(p, changed, cache=cache)
    by_node = {r.node: r for r in second.results}
    least = {n: next(s for s in r.scores if s.name == "NodeResourcesLeastAllocated") for n, r in by_node.items()}
    assert not least[first.node].cached  # its generation moved on: recomputed
    assert all(least[n].cached for n in by_node if n != first.node)
    assert least[first.node].score < least[next(n for n in by_node if n != first.node)].score
    assert second.node != first.node
    # a relabelled node is a changed node too
    relabelled = changed.with_node(node("b", labels={"disk": "ssd"}))
    third = schedule(p, relabelled, cache=cache)
    assert next(r for r in third.results if r.node == "b").cached is False
    assert next(r for r in third.results if r.node == "a").cached is True


def test_decisions_are_the_same_with_and_without_a_cache():
    pods = replicas(12, cpu="300m")
    snapshot = Snapshot.build(zoned(9))
    assert fingerprint(plan(pods, snapshot)[0]) == fingerprint(plan(pods, snapshot, cache=Cache())[0])
