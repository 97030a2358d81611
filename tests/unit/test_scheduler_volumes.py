"""The volume filters (VolumeRestrictions, VolumeBinding, VolumeZone) and namespaceSelector, table-driven,
then through pipeline.schedule and batch.place: kube's messages, the class key, claims shared by pods."""
import pytest

from reconcilers.scheduler import filters as f
from reconcilers.scheduler.batch import place
from reconcilers.scheduler.pipeline import Cache, equivalence_class, schedule
from reconcilers.scheduler.record import explain_record, from_decision
from reconcilers.scheduler.resources import Snapshot
from reconcilers.scheduler.volumes import SELECTED_NODE, Volumes

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def node(name, zone=None, **labels):
    labels = {HOST: name, **({ZONE: zone} if zone else {}), **labels}
    return {"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


def pod(name="p", *claims, namespace="default", labels=None, affinity=None, ephemeral=None, node_name=None):
    volumes = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    if ephemeral:
        volumes.append({"name": ephemeral, "ephemeral": {"volumeClaimTemplate": {"spec": {}}}})
    spec = {"containers": [{"name": "c", "image": "app:1"}]}
    if volumes:
        spec["volumes"] = volumes
    if affinity:
        spec["affinity"] = affinity
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "spec": spec}


def pvc(name, *, cls="wait", volume=None, selected=None, modes=("ReadWriteOnce",), size="1Gi", deleting=False):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "annotations": {}}
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, "storageClassName": cls}
    if volume:
        spec["volumeName"] = volume
        meta["annotations"]["pv.kubernetes.io/bind-completed"] = "yes"
    if selected:
        meta["annotations"][SELECTED_NODE] = selected
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T08:00:00Z"
    return {"metadata": meta, "spec": spec}


def pv(name, *, host=None, zone=None, cls="wait", size="5Gi", claim=None):
    spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadWriteOncePod"],
            "storageClassName": cls}
    if host:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOST, "operator": "In", "values": [host]}]}]}}
    if claim:
        spec["claimRef"] = {"name": claim, "namespace": "default"}
    return {"metadata": {"name": name, "labels": {ZONE: zone} if zone else {}}, "spec": spec}


def sc(name, mode="WaitForFirstConsumer", provisioner="eventplane.io/local-path", zones=None):
    out = {"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}
    if zones:
        out["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": list(zones)}]}]
    return out


def volumes(claims=(), pvs=(), classes=(sc("wait"), sc("now", mode="Immediate"))):
    return Volumes({f"default/{c['metadata']['name']}": c for c in claims},
                   {p["metadata"]["name"]: p for p in pvs}, {c["metadata"]["name"]: c for c in classes})


NODES = [node("a", zone="z1"), node("b", zone="z2")]

# (case, pod, claims, pvs, bound pods, filter, node, expected reason)
CASES = [
    ("bound volume pinned here", pod("p", "d"), [pvc("d", volume="v")], [pv("v", host="a")], [],
     f.VolumeBinding(), "a", None),
    ("bound volume pinned elsewhere", pod("p", "d"), [pvc("d", volume="v")], [pv("v", host="a")], [],
     f.VolumeBinding(), "b", (f.REASON_VOLUME_NODE_CONFLICT,)),
    ("bound volume without node affinity", pod("p", "d"), [pvc("d", volume="v")], [pv("v")], [],
     f.VolumeBinding(), "b", None),
    ("bound to a volume that does not exist", pod("p", "d"), [pvc("d", volume="gone")], [], [],
     f.VolumeBinding(), "a", (f.REASON_PV_NOT_EXIST,)),
    ("missing claim", pod("p", "d"), [], [], [], f.VolumeBinding(), "a", 'persistentvolumeclaim "d" not found'),
    ("claim being deleted", pod("p", "d"), [pvc("d", deleting=True)], [], [], f.VolumeBinding(), "a",
     'persistentvolumeclaim "d" is being deleted'),
    ("ephemeral claim not created yet", pod("p", ephemeral="scratch"), [], [], [], f.VolumeBinding(), "a",
     'waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch"'),
    ("unbound immediate", pod("p", "d"), [pvc("d", cls="now")], [], [], f.VolumeBinding(), "a",
     "pod has unbound immediate PersistentVolumeClaims"),
    ("unbound without a class is immediate", pod("p", "d"), [pvc("d", cls="")], [], [], f.VolumeBinding(), "a",
     "pod has unbound immediate PersistentVolumeClaims"),
    ("class missing", pod("p", "d"), [pvc("d", cls="nope")], [], [], f.VolumeBinding(), "a",
     'storageclass.storage.k8s.io "nope" not found'),
    ("wait: provisioned anywhere", pod("p", "d"), [pvc("d")], [], [], f.VolumeBinding(), "b", None),
    ("wait: selected elsewhere", pod("p", "d"), [pvc("d", selected="a")], [], [], f.VolumeBinding(), "b",
     (f.REASON_VOLUME_BIND_CONFLICT,)),
    ("wait: selected here", pod("p", "d"), [pvc("d", selected="b")], [], [], f.VolumeBinding(), "b", None),
    ("wait: a pod using it is on another node", pod("p", "d"), [pvc("d")], [], [pod("q", "d", node_name="a")],
     f.VolumeBinding(), "b", (f.REASON_VOLUME_BIND_CONFLICT,)),
    ("wait: a pod using it is here", pod("p", "d"), [pvc("d")], [], [pod("q", "d", node_name="b")],
     f.VolumeBinding(), "b", None),
    ("wait: no provisioner, an Available volume elsewhere", pod("p", "d"), [pvc("d", cls="local")],
     [pv("v", host="a", cls="local")], [], f.VolumeBinding(), "b", (f.REASON_VOLUME_BIND_CONFLICT,)),
    ("wait: no provisioner, an Available volume here", pod("p", "d"), [pvc("d", cls="local")],
     [pv("v", host="b", cls="local")], [], f.VolumeBinding(), "b", None),
    ("wait: the Available volume is too small", pod("p", "d"), [pvc("d", cls="local", size="9Gi")],
     [pv("v", host="b", cls="local")], [], f.VolumeBinding(), "b", (f.REASON_VOLUME_BIND_CONFLICT,)),
    ("wait: allowedTopologies exclude the zone", pod("p", "d"), [pvc("d", cls="z1only")], [], [],
     f.VolumeBinding(), "b", (f.REASON_VOLUME_BIND_CONFLICT,)),
    ("wait: allowedTopologies include the zone", pod("p", "d"), [pvc("d", cls="z1only")], [], [],
     f.VolumeBinding(), "a", None),
    ("zone: volume in this zone", pod("p", "d"), [pvc("d", volume="v")], [pv("v", zone="z1")], [],
     f.VolumeZone(), "a", None),
    ("zone: volume in another zone", pod("p", "d"), [pvc("d", volume="v")], [pv("v", zone="z1")], [],
     f.VolumeZone(), "b", f.REASON_VOLUME_ZONE),
    ("zone: one of several zones", pod("p", "d"), [pvc("d", volume="v")], [pv("v", zone="z0__z2")], [],
     f.VolumeZone(), "b", None),
    ("rwop: claim in use", pod("p", "d"), [pvc("d", volume="v", modes=("ReadWriteOncePod",))], [pv("v")],
     [pod("q", "d", node_name="a")], f.VolumeRestrictions(), "b", f.REASON_RWOP_CONFLICT),
    ("rwop: claim free", pod("p", "d"), [pvc("d", volume="v", modes=("ReadWriteOncePod",))], [pv("v")], [],
     f.VolumeRestrictions(), "b", None),
    ("rwo: claim in use elsewhere is no restriction", pod("p", "d"), [pvc("d", volume="v")], [pv("v")],
     [pod("q", "d", node_name="a")], f.VolumeRestrictions(), "b", None),
]


@pytest.mark.parametrize("case,p,claims,pvs,bound,filter_,name,expected", CASES, ids=[c[0] for c in CASES])
def test_volume_filters(case, p, claims, pvs, bound, filter_, name, expected):
    classes = (sc("wait"), sc("now", mode="Immediate"), sc("local", provisioner="kubernetes.io/no-provisioner"),
               sc("z1only", zones=["z1"]))
    snapshot = Snapshot.build(NODES, bound, volumes=volumes(claims, pvs, classes))
    state = filter_.prepare(p, snapshot)
    assert filter_.check(p, snapshot.get(name), snapshot, state) == expected


def test_a_node_without_topology_labels_takes_a_zoned_volume():
    snapshot = Snapshot.build([node("plain")], volumes=volumes([pvc("d", volume="v")], [pv("v", zone="z1")]))
    p = pod("p", "d")
    assert f.VolumeZone().check(p, snapshot.get("plain"), snapshot, f.VolumeZone().prepare(p, snapshot)) is None


def test_pods_without_claims_skip_the_volume_filters():
    names = [x.name for x in f.applicable(f.DEFAULT_FILTERS, pod("p"))]
    assert "VolumeBinding" not in names and "VolumeZone" not in names and "VolumeRestrictions" not in names
    assert len(f.applicable(f.DEFAULT_FILTERS, pod("p", "d"))) == len(f.DEFAULT_FILTERS)


# --- decisions ---------------------------------------------------------------------------------------

def decide(p, claims=(), pvs=(), bound=(), nodes=NODES):
    return schedule(p, Snapshot.build(nodes, bound, volumes=volumes(claims, pvs)), cache=Cache())


def test_a_missing_claim_fails_with_kubes_prefilter_message_and_explain_names_the_filter():
    d = decide(pod("p", "data"))
    assert d.node is None
    rec = from_decision(d, [x.name for x in f.DEFAULT_FILTERS])
    assert rec["message"] == '0/2 nodes are available: persistentvolumeclaim "data" not found.'
    assert "filter VolumeBinding (PreFilter): persistentvolumeclaim \"data\" not found" in explain_record(rec)
    assert rec["rejected"][0]["count"] == 2


def test_a_volume_pinned_to_one_node_sends_the_pod_there_and_explains_the_others():
    nodes = [node(f"n{i}") for i in range(5)]
    d = decide(pod("p", "d"), [pvc("d", volume="v")], [pv("v", host="n3")], nodes=nodes)
    assert d.node == "n3"
    rec = from_decision(d, [x.name for x in f.DEFAULT_FILTERS])
    assert rec["rejected"] == [{"filter": "VolumeBinding", "reasons": [f.REASON_VOLUME_NODE_CONFLICT], "count": 4,
                                "nodes": ["n0", "n1", "n2", "n4"]}]
    d = decide(pod("p", "d"), [pvc("d", volume="v")], [pv("v", host="elsewhere")], nodes=nodes)
    assert from_decision(d, [])["message"] == "0/5 nodes are available: 5 node(s) had volume node affinity conflict."


def test_the_class_key_separates_claims_and_follows_their_state():
    snap = Snapshot.build(NODES, volumes=volumes([pvc("d", volume="v")], [pv("v", host="a")]))
    moved = Snapshot.build(NODES, volumes=volumes([pvc("d", volume="v")], [pv("v", host="b")]))
    assert equivalence_class(pod("p")) != equivalence_class(pod("p", "d"))
    assert equivalence_class(pod("p", "d"), snap) != equivalence_class(pod("p", "d"), moved)
    assert equivalence_class(pod("p", "d"), snap) == equivalence_class(pod("q", "d"), snap)
    # Cached per-node verdicts follow the volume: the same cache, a moved volume, another node.
    cache = Cache()
    assert schedule(pod("p", "d"), snap, cache=cache).node == "a"
    assert schedule(pod("p", "d"), moved, cache=cache).node == "b"


def test_pods_sharing_a_wait_for_first_consumer_claim_land_on_one_node_in_one_batch():
    nodes = [node(f"n{i}") for i in range(6)]
    snapshot = Snapshot.build(nodes, volumes=volumes([pvc("shared")]))
    pods = [pod(f"p{i}", "shared", labels={"app": "x"}) for i in range(4)]
    placements, _, _ = place(pods, snapshot, cache=Cache())
    assert len({pl.node for pl in placements}) == 1 and placements[0].node is not None


# --- namespaceSelector ---------------------------------------------------------------------------------

def affinity_term(**term):
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST, **term}]}}


NS = {"default": {}, "prod": {"env": "prod"}, "dev": {"env": "dev"}}


@pytest.mark.parametrize("term,where", [
    ({"namespaceSelector": {"matchLabels": {"env": "prod"}}}, {"a"}),
    ({"namespaceSelector": {"matchLabels": {"env": "dev"}}}, {"b"}),
    ({"namespaceSelector": {}}, {"a", "b", "c"}),                  # {}: every namespace
    ({}, {"c"}),                                                    # null and no namespaces: the pod's own
    ({"namespaces": ["dev"]}, {"b"}),
    ({"namespaces": ["dev"], "namespaceSelector": {"matchLabels": {"env": "prod"}}}, {"a", "b"}),   # the union
    ({"namespaceSelector": {"matchLabels": {"env": "test"}}}, set()),
], ids=["prod-selector", "dev-selector", "empty-selector", "own-namespace", "names", "union", "none"])
def test_namespace_selector_in_pod_affinity(term, where):
    nodes = [node("a"), node("b"), node("c")]
    bound = [pod("db1", namespace="prod", labels={"app": "db"}, node_name="a"),
             pod("db2", namespace="dev", labels={"app": "db"}, node_name="b"),
             pod("db3", namespace="default", labels={"app": "db"}, node_name="c")]
    snapshot = Snapshot.build(nodes, bound, namespaces=NS)
    p = pod("web", affinity=affinity_term(**term))
    ipa = f.InterPodAffinity()
    state = ipa.prepare(p, snapshot)
    assert {n["metadata"]["name"] for n in nodes if ipa.check(p, snapshot.get(n["metadata"]["name"]), snapshot,
                                                             state) is None} == where


def test_namespace_labels_changed_in_the_snapshot_change_the_verdict():
    nodes = [node("a"), node("b")]
    bound = [pod("db1", namespace="prod", labels={"app": "db"}, node_name="a")]
    p = pod("web", affinity=affinity_term(namespaceSelector={"matchLabels": {"env": "prod"}}))
    before = Snapshot.build(nodes, bound, namespaces={"prod": {}})
    after = before.with_namespaces({"prod": {"env": "prod"}})
    cache = Cache()
    assert schedule(p, before, cache=cache).node is None
    assert schedule(p, after, cache=cache).node == "a"
