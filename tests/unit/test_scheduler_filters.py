"""Feasibility checks, table-driven: each case is a pod, a node (with its pods) and kube's reason or None."""
import pytest

from reconcilers.scheduler import filters as f
from reconcilers.scheduler.resources import Snapshot, pod_requests

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def node(name="n1", *, cpu="2", memory="4Gi", pods="110", labels=None, taints=None, unschedulable=False,
         storage=None, zone=None):
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods}
    if storage:
        allocatable["ephemeral-storage"] = storage
    labels = {HOST: name, **({ZONE: zone} if zone else {}), **(labels or {})}
    spec = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels}, "spec": spec, "status": {"allocatable": allocatable}}


def pod(name="p", *, cpu=None, memory=None, labels=None, node_name=None, namespace="default", tolerations=None,
        node_selector=None, affinity=None, spread=None, host_port=None, owner=None, storage=None, image="app:1"):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("ephemeral-storage", storage)) if v}
    container = {"name": "c", "image": image, "resources": {"requests": requests} if requests else {}}
    if host_port:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    spec = {"containers": [container]}
    for key, value in (("nodeName", node_name), ("tolerations", tolerations), ("nodeSelector", node_selector),
                       ("affinity", affinity), ("topologySpreadConstraints", spread)):
        if value is not None:
            spec[key] = value
    meta = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}]
    return {"metadata": meta, "spec": spec}


def run(filter_, p, nodes, bound=(), name=None):
    """The filter's reasons on node `name` (default: the first) of a snapshot of `nodes` and `bound` pods."""
    snapshot = Snapshot.build(nodes, bound)
    info = snapshot.get(name or nodes[0]["metadata"]["name"])
    return filter_.check(p, info, snapshot, filter_.prepare(p, snapshot))


def on(node_name, p):
    return {**p, "spec": {**p["spec"], "nodeName": node_name}}


def test_pod_requests_sum_containers_max_init_and_add_overhead():
    p = pod(cpu="250m", memory="1Gi")
    p["spec"]["containers"].append({"name": "d", "resources": {"requests": {"cpu": "250m"}}})
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}}]
    p["spec"]["overhead"] = {"cpu": "10m"}
    assert pod_requests(p) == {"cpu": 1010, "memory": 2 ** 30}
    assert pod_requests(pod()) == {}
    assert pod_requests(pod(), non_zero=True) == {"cpu": 100, "memory": 200 * 2 ** 20}


@pytest.mark.parametrize("p, n, bound, reasons", [
    pytest.param(pod(cpu="2"), node(cpu="2"), [], None, id="cpu-fits-exactly"),
    pytest.param(pod(cpu="2001m"), node(cpu="2"), [], ("Insufficient cpu",), id="cpu-one-millicore-too-much"),
    pytest.param(pod(cpu="1001m"), node(cpu="2"), [on("n1", pod("a", cpu="1"))], ("Insufficient cpu",),
                 id="cpu-taken-by-bound-pod"),
    pytest.param(pod(cpu="1"), node(cpu="2"), [on("n1", pod("a", cpu="1"))], None, id="cpu-fits-beside-bound-pod"),
    pytest.param(pod(memory="4Gi"), node(memory="4Gi"), [], None, id="memory-fits-exactly"),
    pytest.param(pod(memory="4294967297"), node(memory="4Gi"), [], ("Insufficient memory",),
                 id="memory-one-byte-too-much"),
    pytest.param(pod(cpu="3", memory="5Gi"), node(), [], ("Insufficient cpu", "Insufficient memory"),
                 id="every-shortage-is-a-reason"),
    pytest.param(pod(storage="2Gi"), node(storage="1Gi"), [], ("Insufficient ephemeral-storage",),
                 id="ephemeral-storage"),
    pytest.param(pod(), node(pods="1"), [on("n1", pod("a"))], ("Too many pods",), id="too-many-pods"),
    pytest.param(pod(), node(cpu="0"), [], None, id="no-requests-always-fit"),
])
def test_resources_fit(p, n, bound, reasons):
    assert run(f.NodeResourcesFit(), p, [n], bound) == reasons


def taint(key="dedicated", value="gpu", effect="NoSchedule"):
    return {"key": key, "value": value, "effect": effect}


@pytest.mark.parametrize("taints, tolerations, reason", [
    pytest.param([taint()], None, "node(s) had untolerated taint {dedicated: gpu}", id="no-toleration"),
    pytest.param([taint()], [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                 None, id="equal-matches"),
    pytest.param([taint()], [{"key": "dedicated", "value": "gpu"}], None, id="equal-is-default-any-effect"),
    pytest.param([taint()], [{"key": "dedicated", "operator": "Equal", "value": "cpu"}],
                 "node(s) had untolerated taint {dedicated: gpu}", id="equal-other-value"),
    pytest.param([taint()], [{"key": "dedicated", "operator": "Exists"}], None, id="exists-key"),
    pytest.param([taint()], [{"operator": "Exists"}], None, id="exists-everything"),
    pytest.param([taint()], [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}],
                 "node(s) had untolerated taint {dedicated: gpu}", id="exists-other-effect"),
    pytest.param([taint(effect="NoExecute")], None, "node(s) had untolerated taint {dedicated: gpu}",
                 id="no-execute-filters"),
    pytest.param([taint(effect="PreferNoSchedule")], None, None, id="prefer-no-schedule-only-scores"),
    pytest.param([taint(), taint("b", "x")], [{"key": "dedicated", "operator": "Exists"}],
                 "node(s) had untolerated taint {b: x}", id="first-untolerated-named"),
])
def test_taints(taints, tolerations, reason):
    assert run(f.TaintToleration(), pod(tolerations=tolerations), [node(taints=taints)]) == reason


@pytest.mark.parametrize("tolerations, reason", [
    pytest.param(None, "node(s) were unschedulable", id="cordoned"),
    pytest.param([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}], None,
                 id="tolerates-cordon"),
])
def test_unschedulable(tolerations, reason):
    assert run(f.NodeUnschedulable(), pod(tolerations=tolerations), [node(unschedulable=True)]) == reason
    assert run(f.NodeUnschedulable(), pod(), [node()]) is None


@pytest.mark.parametrize("wanted, reason", [
    pytest.param(None, None, id="unset"),
    pytest.param("n1", None, id="this-node"),
    pytest.param("n2", "node(s) didn't match the requested node name", id="other-node"),
])
def test_node_name(wanted, reason):
    assert run(f.NodeName(), pod(node_name=wanted), [node()]) == reason


def required(*expressions):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}


NO_MATCH = "node(s) didn't match Pod's node affinity/selector"
LABELS = {"disk": "ssd", "cores": "16"}


@pytest.mark.parametrize("selector, affinity, reason", [
    pytest.param({"disk": "ssd"}, None, None, id="selector-matches"),
    pytest.param({"disk": "hdd"}, None, NO_MATCH, id="selector-other-value"),
    pytest.param({"gpu": "true"}, None, NO_MATCH, id="selector-missing-label"),
    pytest.param(None, required({"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}), None, id="in"),
    pytest.param(None, required({"key": "disk", "operator": "In", "values": ["hdd"]}), NO_MATCH, id="in-miss"),
    pytest.param(None, required({"key": "disk", "operator": "NotIn", "values": ["hdd"]}), None, id="notin"),
    pytest.param(None, required({"key": "disk", "operator": "NotIn", "values": ["ssd"]}), NO_MATCH,
                 id="notin-miss"),
    pytest.param(None, required({"key": "disk", "operator": "Exists"}), None, id="exists"),
    pytest.param(None, required({"key": "gpu", "operator": "Exists"}), NO_MATCH, id="exists-miss"),
    pytest.param(None, required({"key": "gpu", "operator": "DoesNotExist"}), None, id="does-not-exist"),
    pytest.param(None, required({"key": "disk", "operator": "DoesNotExist"}), NO_MATCH, id="does-not-exist-miss"),
    pytest.param(None, required({"key": "cores", "operator": "Gt", "values": ["8"]}), None, id="gt"),
    pytest.param(None, required({"key": "cores", "operator": "Gt", "values": ["16"]}), NO_MATCH, id="gt-miss"),
    pytest.param(None, required({"key": "cores", "operator": "Lt", "values": ["32"]}), None, id="lt"),
    pytest.param(None, required({"key": "cores", "operator": "Lt", "values": ["16"]}), NO_MATCH, id="lt-miss"),
    pytest.param(None, required({"key": "disk", "operator": "Exists"}, {"key": "cores", "operator": "Gt",
                                                                         "values": ["20"]}), NO_MATCH,
                 id="expressions-are-anded"),
    pytest.param(None, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}, None,
        id="terms-are-ored-match-fields"),
    pytest.param({"disk": "ssd"}, required({"key": "gpu", "operator": "Exists"}), NO_MATCH,
                 id="selector-and-affinity-both-needed"),
])
def test_node_affinity(selector, affinity, reason):
    assert run(f.NodeAffinity(), pod(node_selector=selector, affinity=affinity), [node(labels=LABELS)]) == reason


@pytest.mark.parametrize("wanted, existing, reason", [
    pytest.param(8080, None, None, id="free"),
    pytest.param(8080, 8080, "node(s) didn't have free ports for the requested pod ports", id="conflict"),
    pytest.param(8080, 9090, None, id="other-port"),
])
def test_host_ports(wanted, existing, reason):
    bound = [on("n1", pod("a", host_port=existing))] if existing else []
    assert run(f.NodePorts(), pod(host_port=wanted), [node()], bound) == reason


def anti(topology_key=HOST, **labels):
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key}]}}


def affinity(topology_key=ZONE, **labels):
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key}]}}


TWO_ZONES = [node("n1", zone="a"), node("n2", zone="a"), node("n3", zone="b")]


@pytest.mark.parametrize("p, bound, target, reason", [
    pytest.param(pod(labels={"app": "web"}, affinity=anti(app="web")), [on("n1", pod("w", labels={"app": "web"}))],
                 "n1", "node(s) didn't match pod anti-affinity rules", id="anti-same-host"),
    pytest.param(pod(labels={"app": "web"}, affinity=anti(app="web")), [on("n1", pod("w", labels={"app": "web"}))],
                 "n2", None, id="anti-other-host"),
    pytest.param(pod(labels={"app": "web"}, affinity=anti(ZONE, app="web")),
                 [on("n1", pod("w", labels={"app": "web"}))], "n2",
                 "node(s) didn't match pod anti-affinity rules", id="anti-same-zone"),
    pytest.param(pod(labels={"app": "web"}, affinity=anti(app="web")),
                 [on("n1", pod("w", labels={"app": "web"}, namespace="other"))], "n1", None,
                 id="anti-other-namespace-ignored"),
    pytest.param(pod(labels={"app": "web"}), [on("n1", pod("w", labels={"app": "db"}, affinity=anti(app="web")))],
                 "n1", "node(s) didn't satisfy existing pods anti-affinity rules", id="existing-pod-anti"),
    pytest.param(pod(affinity=affinity(app="db")), [on("n1", pod("d", labels={"app": "db"}))], "n2", None,
                 id="affinity-same-zone"),
    pytest.param(pod(affinity=affinity(app="db")), [on("n1", pod("d", labels={"app": "db"}))], "n3",
                 "node(s) didn't match pod affinity rules", id="affinity-other-zone"),
    pytest.param(pod(affinity=affinity(app="db")), [], "n3", "node(s) didn't match pod affinity rules",
                 id="affinity-nothing-matches"),
    pytest.param(pod(labels={"app": "db"}, affinity=affinity(app="db")), [], "n3", None,
                 id="affinity-first-of-its-group"),
])
def test_inter_pod_affinity(p, bound, target, reason):
    assert run(f.InterPodAffinity(), p, TWO_ZONES, bound, target) == reason


def spread(max_skew=1, key=ZONE, **labels):
    return [{"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": labels}}]


THREE_ZONES = [node("a1", zone="a"), node("b1", zone="b"), node("c1", zone="c")]
SKEW = "node(s) didn't match pod topology spread constraints"


def web(name, node_name):
    return on(node_name, pod(name, labels={"app": "web"}))


@pytest.mark.parametrize("bound, target, max_skew, reason", [
    pytest.param([], "a1", 1, None, id="empty-cluster"),
    pytest.param([web("w1", "a1")], "a1", 1, SKEW, id="second-in-same-zone"),
    pytest.param([web("w1", "a1")], "b1", 1, None, id="second-in-empty-zone"),
    pytest.param([web("w1", "a1"), web("w2", "b1")], "a1", 1, SKEW, id="third-must-go-to-c"),
    pytest.param([web("w1", "a1"), web("w2", "b1")], "c1", 1, None, id="third-in-c"),
    pytest.param([web("w1", "a1")], "a1", 2, None, id="max-skew-2-allows"),
])
def test_topology_spread(bound, target, max_skew, reason):
    p = pod(labels={"app": "web"}, spread=spread(max_skew, app="web"))
    assert run(f.PodTopologySpread(), p, THREE_ZONES, bound, target) == reason


def test_topology_spread_missing_label_and_soft_constraints():
    p = pod(labels={"app": "web"}, spread=spread(1, "rack", app="web"))
    assert run(f.PodTopologySpread(), p, THREE_ZONES) == \
        "node(s) didn't match pod topology spread constraints (missing required label)"
    soft = spread(1, "rack", app="web")
    soft[0]["whenUnsatisfiable"] = "ScheduleAnyway"
    assert run(f.PodTopologySpread(), pod(spread=soft), THREE_ZONES) is None


def test_cluster_wide_prepares_follow_a_snapshot_node_by_node():
    """Spread counts and the nodes holding anti-affinity pods are carried from one snapshot to the next by
    the node that changed (Snapshot.derived): they must equal what a snapshot built afresh gives."""
    from reconcilers.scheduler.filters import InterPodAffinity, PodTopologySpread
    nodes = [node(f"n{i}", zone="abc"[i % 3]) for i in range(6)]
    spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "web"}}}]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST}]}}
    incoming = [pod("s", labels={"app": "web"}, spread=spread),
                pod("z", labels={"app": "web"}, spread=spread, node_selector={ZONE: "a"}),
                pod("plain", labels={"app": "web"})]
    steps = [("n0", pod("w0", labels={"app": "web"})), ("n1", pod("w1", labels={"app": "web"}, affinity=anti)),
             ("n3", pod("w2", labels={"app": "web"})), ("n1", None), ("n4", pod("w3", labels={"app": "db"}))]
    snapshot, bound = Snapshot.build(nodes), []
    for name, p in steps:
        for f in (PodTopologySpread(), InterPodAffinity()):
            for q in incoming:
                f.prepare(q, snapshot)   # memoized on this snapshot, for the next one to start from
        if p is None:
            gone = next(b for b in bound if b["spec"]["nodeName"] == name)
            bound.remove(gone)
            snapshot = snapshot.without_pod(f"default/{gone['metadata']['name']}", name)
        else:
            bound.append(on(name, p))
            snapshot = snapshot.with_pod(p, name)
        fresh = Snapshot.build(nodes, bound)
        for f in (PodTopologySpread(), InterPodAffinity()):
            for q in incoming:
                assert f.prepare(q, snapshot) == f.prepare(q, fresh), (f.name, q["metadata"]["name"], name)
    assert PodTopologySpread().prepare(incoming[0], snapshot)[0][2] == {"a": 2, "b": 0, "c": 0}
    assert InterPodAffinity().prepare(incoming[2], snapshot)[4] == set()
