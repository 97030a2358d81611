"""Batch placement per equivalence class: the same choices as one-by-one decisions, at a fraction of the work."""
import pytest

from reconcilers.scheduler import BIN_PACKING_PROFILE, Cache, Options, Snapshot, plan
from reconcilers.scheduler.batch import batchable, place
from reconcilers.scheduler.filters import DEFAULT_FILTERS
from reconcilers.scheduler.record import dumps, explain_record, from_decision, loads
from tests.unit.test_scheduler_filters import ZONE, node, on, pod


def zoned(count, zones=3, **kw):
    return [node(f"n{i:04d}", zone="abc"[i % zones], **kw) for i in range(count)]


def replicas(count, **kw):
    return [pod(f"web-{i}", labels={"app": "web"}, owner="web", **kw) for i in range(count)]


@pytest.mark.parametrize("profile", [None, BIN_PACKING_PROFILE], ids=["default", "bin-packing"])
@pytest.mark.parametrize("count, nodes, cpu", [(40, 12, "500m"), (90, 150, "4"), (30, 5, "1")])
def test_batch_places_as_one_by_one_decisions_would(profile, count, nodes, cpu):
    """Without relaxed randomization both examine every node: the choices must be identical."""
    options = Options(relaxed_randomization=False)
    snapshot = Snapshot.build(zoned(nodes, cpu="8"), [on("n0001", pod("x", cpu="3"))])
    pods = replicas(count, cpu=cpu)
    kw = {"profile": profile} if profile else {}
    one_by_one, _ = plan(pods, snapshot, options=options, **kw)
    batched, after, _ = place(pods, snapshot, options=options, cache=Cache(), **kw)
    assert [p.node for p in batched] == [d.node for d in one_by_one]
    assert any(p.node is None for p in batched) == any(d.node is None for d in one_by_one)
    placed = sum(1 for p in batched if p.node)
    assert sum(len(info.pods) for info in after.nodes) == placed + 1


def test_records_of_later_pods_tell_their_own_decision():
    snapshot = Snapshot.build(zoned(3, cpu="2"))
    batched, _, _ = place(replicas(7, cpu="1"), snapshot, cache=Cache())
    assert [p.node is not None for p in batched] == [True] * 6 + [False]
    last = batched[-1].record
    assert last["pod"] == "default/web-6" and last["batch"] == [6, 7]
    assert last["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    assert last["rejected"] == [{"filter": "NodeResourcesFit", "reasons": ["Insufficient cpu"], "count": 3,
                                 "nodes": ["n0000", "n0001", "n0002"]}]
    assert batched[-1].rejected_by == {"NodeResourcesFit"}
    second = batched[1].record
    assert second["node"] == batched[1].node and second["top"][0]["node"] == batched[1].node
    text = explain_record(loads(dumps(second)))
    assert f"Decision: scheduled to {batched[1].node}" in text
    assert "Placed as pod 2 of 7 of one equivalence class" in text
    assert "score  SelectorSpread:" in text


def test_replicas_spread_over_zones_in_one_batch():
    snapshot = Snapshot.build([node("a1", zone="a", cpu="8"), node("a2", zone="a", cpu="8"),
                               node("b1", zone="b", cpu="8"), node("c1", zone="c", cpu="8")])
    batched, _, _ = place(replicas(6), snapshot, cache=Cache())
    zones = sorted(p.node[0] for p in batched)
    assert zones == ["a", "a", "b", "b", "c", "c"]


def test_the_window_grows_when_placements_fill_it():
    """Relaxed randomization stops at nodes_to_find feasible nodes; when those fill up it examines more."""
    snapshot = Snapshot.build(zoned(300, cpu="1"))
    batched, _, next_start = place(replicas(200, cpu="1"), snapshot, cache=Cache())
    assert all(p.node for p in batched)
    assert len({p.node for p in batched}) == 200
    assert batched[0].record["examined"] == 144 and batched[-1].record["examined"] == 300
    assert next_start == 0


@pytest.mark.parametrize("spec, expected", [
    ({}, True),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]},
     False),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"}]},
     True),
    ({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {}, "topologyKey": ZONE}]}}}, False),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
     True),
])
def test_batchable(spec, expected):
    p = pod()
    p["spec"].update(spec)
    assert batchable(p) is expected


def test_without_equivalence_classes_every_pod_is_decided_alone():
    snapshot = Snapshot.build(zoned(5))
    batched, _, _ = place(replicas(4), snapshot, options=Options(equivalence_classes=False), cache=Cache())
    assert all(p.decision is not None for p in batched)
    assert all("batch" not in p.record for p in batched)


def _cluster(nodes):
    from reconcilers.scheduler.cache import NodeCache
    cache = NodeCache()
    for n in nodes:
        cache.add_node(n)
    return cache


@pytest.mark.parametrize("per_pass", [1, 2, 3])
def test_class_states_kept_across_passes_decide_as_one_by_one(per_pass):
    """Pods arriving a few per pass reuse their class's state, brought up to date from the cache's log.
    (Passes are small enough that grouping by class does not reorder them.)"""
    from reconcilers.scheduler.batch import ClassStates
    options = Options(relaxed_randomization=False)
    nodes = zoned(20, cpu="4")
    pods = [p for i in range(24) for p in (replicas(1, cpu="500m") if i % 3 else [pod(f"db-{i}", cpu="1")])]
    for i, p in enumerate(pods):
        p["metadata"]["name"] = f"{p['metadata']['name']}-{i}"
    expected, _ = plan(pods, Snapshot.build(nodes), options=options)
    cache = _cluster(nodes)
    states = ClassStates(cache)
    got = []
    for k in range(0, len(pods), per_pass):
        placed, _, _ = place(pods[k:k + per_pass], cache.snapshot, options=options, cache=Cache(), states=states)
        for pl in placed:
            got.append(pl.node)
            if pl.node:
                cache.assume(pl.pod, pl.node)
    assert got == [d.node for d in expected]
    assert states.reused > 0


def test_a_node_change_or_an_anti_affinity_pod_rebuilds_class_states():
    from reconcilers.scheduler.batch import ClassStates
    cache = _cluster(zoned(3))
    states = ClassStates(cache)
    place(replicas(1), cache.snapshot, cache=Cache(), states=states)
    place(replicas(1), cache.snapshot, cache=Cache(), states=states)
    assert (states.rebuilt, states.reused) == (1, 1)
    cache.update_node(node("n0000", zone="a", cpu="64"))
    place(replicas(1), cache.snapshot, cache=Cache(), states=states)
    assert states.rebuilt == 2
    anti = pod("loner", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}]}})
    cache.assume(anti, "n0001")
    batched, _, _ = place(replicas(1), cache.snapshot, cache=Cache(), states=states)
    assert states.rebuilt == 3
    assert batched[0].node == "n0000"   # zone b is barred now, and zone a's big node wins


@pytest.mark.parametrize("constraint", ["spread", "anti", "affinity"])
def test_classes_whose_feasibility_reads_other_nodes_place_as_one_by_one(constraint):
    """Spread and inter-pod (anti-)affinity classes are checked again on every node after each placement."""
    options = Options(relaxed_randomization=False)
    extra = {
        "spread": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                                   "whenUnsatisfiable": "DoNotSchedule",
                                                   "labelSelector": {"matchLabels": {"app": "web"}}}]},
        "anti": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}},
        "affinity": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}]}}},
    }[constraint]
    nodes = [node(f"n{i:02d}", zone="abc"[i % 3] if i < 10 else "a", cpu="2") for i in range(12)]
    pods = replicas(16, cpu="500m")
    for p in pods:
        p["spec"].update(extra)
    snapshot = Snapshot.build(nodes)
    expected, _ = plan(pods, snapshot, options=options)
    batched, _, _ = place(pods, snapshot, options=options, cache=Cache())
    assert [p.node for p in batched] == [d.node for d in expected]
    assert batched[-1].record.get("batch") == [15, 16]


@pytest.mark.parametrize("constraint", ["plain", "spread", "anti", "preferred"])
def test_a_class_state_starts_with_the_decision_schedule_would_make(constraint):
    """A class state's first pod is decided straight into the state (no pipeline Decision): with relaxed
    randomization on (a window from the offset) its record must equal the pipeline's, node by node."""
    from reconcilers.scheduler.batch import ClassStates
    extra = {
        "plain": {},
        "spread": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                                   "whenUnsatisfiable": "DoNotSchedule",
                                                   "labelSelector": {"matchLabels": {"app": "web"}}}]},
        "anti": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}},
        "preferred": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["b"]}]}}]}}},
    }[constraint]
    nodes = zoned(150, cpu="2")
    nodes[7]["spec"]["taints"] = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    nodes[9]["spec"]["taints"] = [{"key": "soft", "effect": "PreferNoSchedule"}]
    bound = [on(f"n{i:04d}", p) for i, p in zip(range(0, 150, 4), replicas(38, cpu="1500m"))]
    p = replicas(1, cpu="1")[0]
    p["spec"].update(extra)
    for start in (0, 61, 149):
        snapshot = Snapshot.build(nodes, bound)
        alone, _, _ = place([p], snapshot, cache=Cache(), start=start)
        cache = _cluster(nodes)
        for b in bound:
            cache.assume(b, b["spec"]["nodeName"])
        kept, _, _ = place([p], cache.snapshot, cache=Cache(), start=start, states=ClassStates(cache))
        assert alone[0].decision is not None and kept[0].decision is None
        assert kept[0].record == alone[0].record
        assert kept[0].rejected_by == alone[0].rejected_by


@pytest.mark.parametrize("max_skew, zones", [(1, 3), (2, 4), (1, 5)])
def test_spread_classes_turning_whole_zones_place_as_one_by_one(max_skew, zones):
    """A zone spread turns whole zones away and back as pods land (batch.py's per-domain verdicts): the
    choices, and each pod's record, must be those of deciding the pods one by one."""
    options = Options(relaxed_randomization=False)
    nodes = [node(f"n{i:03d}", zone="abcde"[i % zones], cpu="1") for i in range(40)]
    nodes[5]["spec"]["unschedulable"] = True
    bound = [on("n001", pod("x", cpu="500m", labels={"app": "web"})), on("n002", pod("y", cpu="1"))]
    pods = replicas(90, cpu="500m")
    for p in pods:
        p["spec"]["topologySpreadConstraints"] = [{"maxSkew": max_skew, "topologyKey": ZONE,
                                                   "whenUnsatisfiable": "DoNotSchedule",
                                                   "labelSelector": {"matchLabels": {"app": "web"}}}]
    snapshot = Snapshot.build(nodes, bound)
    expected, _ = plan(pods, snapshot, options=options)
    batched, _, _ = place(pods, snapshot, options=options, cache=Cache())
    assert [p.node for p in batched] == [d.node for d in expected]
    assert any(p.node is None for p in batched)   # the cluster fills up: the last ones fit nowhere
    for pl, d in zip(batched, expected):
        got = {k: v for k, v in pl.record.items() if k != "batch"}
        want = from_decision(d, [f.name for f in DEFAULT_FILTERS])
        assert got["top"] == want["top"] and got["rejected"] == want["rejected"], pl.pod["metadata"]["name"]
        assert got["message"] == want["message"] and got["feasible"] == want["feasible"]
