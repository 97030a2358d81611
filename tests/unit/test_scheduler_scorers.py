"""Scorers: kube-scheduler's formulas on small, hand-checked cases."""
import pytest

from reconcilers.scheduler import scorers as s
from reconcilers.scheduler.resources import Snapshot
from tests.unit.test_scheduler_filters import node, on, pod


def raw(scorer, p, nodes, bound=(), name=None):
    snapshot = Snapshot.build(nodes, bound)
    return scorer.score(p, snapshot.get(name or nodes[0]["metadata"]["name"]), snapshot, scorer.prepare(p, snapshot))


def normalized(scorer, p, nodes, bound=()):
    snapshot = Snapshot.build(nodes, bound)
    values = {n.name: scorer.score(p, n, snapshot).value for n in snapshot.nodes}
    return scorer.normalize(values, snapshot)


@pytest.mark.parametrize("scorer, cpu, memory, bound_cpu, expected", [
    # cpu (4000−1000)/4000 → 75, memory (4Gi−1Gi)/4Gi → 75
    pytest.param(s.LeastAllocated(), "1", "1Gi", None, 75, id="least-empty-node"),
    # cpu (4000−3000)/4000 → 25; memory 4Gi − (1Gi + 1 byte) → 74 (integer division)
    pytest.param(s.LeastAllocated(), "1", "1Gi", "2", 49, id="least-with-bound-pod"),
    pytest.param(s.LeastAllocated(), "5", "1Gi", None, 37, id="least-over-capacity-is-zero"),  # cpu 0, mem 75
    pytest.param(s.MostAllocated(), "1", "1Gi", None, 25, id="most-empty-node"),
    pytest.param(s.MostAllocated(), "5", "1Gi", None, 62, id="most-caps-at-capacity"),  # cpu 100, mem 25
    pytest.param(s.BalancedAllocation(), "1", "1Gi", None, 100, id="balanced-even"),
    pytest.param(s.BalancedAllocation(), "2", "0.5Gi", None, 81, id="balanced-uneven"),  # |.5−.125|/2
])
def test_allocation_scores(scorer, cpu, memory, bound_cpu, expected):
    bound = [on("n1", pod("b", cpu=bound_cpu, memory="1"))] if bound_cpu else []
    score = raw(scorer, pod(cpu=cpu, memory=memory), [node(cpu="4", memory="4Gi")], bound)
    assert score.value == expected
    assert score.label


def test_least_allocated_counts_best_effort_pods_as_default_requests():
    # cpu 100m of 1000m, memory 200Mi of 2000Mi: both 90% free → 90
    assert raw(s.LeastAllocated(), pod(), [node(cpu="1", memory="2000Mi")]).value == 90


def preferred(*terms):
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": {"matchExpressions": [e]}} for w, e in terms]}}


def test_node_affinity_preferred_scales_to_best_node():
    p = pod(affinity=preferred((80, {"key": "disk", "operator": "In", "values": ["ssd"]}),
                               (20, {"key": "cores", "operator": "Gt", "values": ["8"]})))
    nodes = [node("a", labels={"disk": "ssd", "cores": "16"}), node("b", labels={"disk": "ssd"}),
             node("c", labels={"cores": "4"})]
    assert normalized(s.NodeAffinityPreferred(), p, nodes) == {"a": 100, "b": 80, "c": 0}


def test_taint_toleration_prefers_fewer_untolerated_prefer_no_schedule():
    t = {"key": "spot", "value": "true", "effect": "PreferNoSchedule"}
    nodes = [node("a"), node("b", taints=[t]), node("c", taints=[t, {**t, "key": "old"}])]
    assert normalized(s.TaintTolerationPreferred(), pod(), nodes) == {"a": 100, "b": 50, "c": 0}
    tolerant = pod(tolerations=[{"operator": "Exists"}])
    assert normalized(s.TaintTolerationPreferred(), tolerant, nodes) == {"a": 100, "b": 100, "c": 100}


def test_image_locality_prefers_nodes_with_the_image():
    big = node("a")
    big["status"]["images"] = [{"names": ["registry/app:1"], "sizeBytes": 500 * 2 ** 20}]
    nodes = [big, node("b")]
    p = pod(image="registry/app:1")
    with_image, without = raw(s.ImageLocality(), p, nodes, name="a"), raw(s.ImageLocality(), p, nodes, name="b")
    # 500MiB × (1 of 2 nodes) = 250MiB → (250 − 23) × 100 / (1000 − 23)
    assert (with_image.value, without.value) == (23, 0)


def test_selector_spread_prefers_emptier_zone_and_node():
    nodes = [node("a1", zone="a"), node("a2", zone="a"), node("b1", zone="b")]
    bound = [on("a1", pod("r1", owner="rs"))]
    scores = normalized(s.SelectorSpread(), pod(owner="rs"), nodes, bound)
    # a1: node 0, zone 0 → 0; a2: node 100, zone 0 → 33; b1: node 100, zone 100 → 100
    assert scores == {"a1": 0, "a2": 33, "b1": 100}
    # pods of another controller do not count
    assert normalized(s.SelectorSpread(), pod(owner="other"), nodes, bound) == {"a1": 100, "a2": 100, "b1": 100}


def test_profiles_are_named_and_weighted():
    assert set(s.PROFILES) == {"default-scheduler", "bin-packing", "hybrid"}
    weights = {scorer.name: w for scorer, w in s.DEFAULT_PROFILE.scorers}
    assert weights["TaintToleration"] == 3 and weights["NodeResourcesLeastAllocated"] == 1


def test_every_scorers_value_is_its_scores_value():
    """Scorer.value (what batch placement computes for every node) must agree with score()'s value (what a
    record shows with its label), on nodes with and without pods, images, taints and allocatable."""
    nodes = [node("a", zone="a"), node("b", zone="b", cpu="1", memory="1Gi"),
             node("c", cpu="0", memory="0", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
             node("d", labels={"disk": "ssd"})]
    nodes[3]["status"]["images"] = [{"names": ["app:1"], "sizeBytes": 300 * 2 ** 20}]
    web = [pod(f"w{i}", cpu="500m", labels={"app": "web"}, owner="web") for i in range(3)]
    bound = [on("a", web[0]), on("a", web[1]), on("d", web[2]), on("b", pod("other", memory="512Mi"))]
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 7, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    pods = [pod("p", cpu="250m", memory="128Mi", labels={"app": "web"}, owner="web"), pod("q"),
            pod("r", cpu="2", affinity=preferred, tolerations=[{"key": "k", "operator": "Exists"}])]
    snapshot = Snapshot.build(nodes, bound).with_avoid({"uid-web": frozenset({"b"})})
    scorers = {type(sc): sc for profile in s.PROFILES.values() for sc, _ in profile.scorers}
    for scorer in scorers.values():
        for p in pods:
            state = scorer.prepare(p, snapshot)
            for info in snapshot.nodes:
                assert scorer.value(p, info, snapshot, state) == scorer.score(p, info, snapshot, state).value, \
                    (scorer.name, p["metadata"]["name"], info.name)
                assert scorer.value(p, info, snapshot) == scorer.score(p, info, snapshot).value


def test_sibling_counts_carried_by_with_pod_equal_counting_afresh():
    """SelectorSpread reads NodeInfo.controlled, which with_pod carries forward instead of recounting."""
    web = [pod(f"w{i}", labels={"app": "web"}, owner="web") for i in range(3)]
    other = pod("o", owner="db", namespace="other")
    snapshot = Snapshot.build([node("a")], [on("a", web[0])])
    assert snapshot.get("a").controlled == {("uid-web", "default"): 1}
    for p in (web[1], other, web[2], pod("lonely")):
        snapshot = snapshot.with_pod(p, "a")
    fresh = Snapshot.build([node("a")], [on("a", p) for p in (*web, other, pod("lonely"))])
    assert snapshot.get("a").controlled == fresh.get("a").controlled == {("uid-web", "default"): 3,
                                                                         ("uid-db", "other"): 1}
    spread = s.SelectorSpread()
    assert spread.score(web[0], snapshot.get("a"), snapshot, spread.prepare(web[0], snapshot)).value == 3
