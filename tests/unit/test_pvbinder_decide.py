"""The PersistentVolume binder's and local-path provisioner's decisions, table-style, without a server."""
from __future__ import annotations

import pytest

from reconcilers.controllers import pvbinder as B


def pv(name, size="1Gi", *, cls="manual", modes=("ReadWriteOnce",), labels=None, claim_ref=None, phase="Available",
       mode=None, node=None, annotations=None, policy="Retain"):
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
            "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": f"/data/{name}"}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    if mode:
        spec["volumeMode"] = mode
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "5", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec, "status": {"phase": phase}}


def pvc(name="data", size="1Gi", *, cls="manual", modes=("ReadWriteOnce",), selector=None, volume=None,
        annotations=None, phase="Pending"):
    spec = {"resources": {"requests": {"storage": size}}, "accessModes": list(modes)}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector:
        spec["selector"] = selector
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "9",
                         "annotations": annotations or {}},
            "spec": spec, "status": {"phase": phase}}


def sc(name, provisioner=B.PROVISIONER, *, mode="Immediate", default=False):
    return {"metadata": {"name": name, "annotations": {B.DEFAULT_CLASS: "true"} if default else {}},
            "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": "Delete"}


def node(name):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}


def bound_to(plan):
    """The volume the claim's volumeName is set to, if the plan binds."""
    for wr in plan.writes:
        if wr.obj["kind"] == "PersistentVolumeClaim" and not wr.subresource and wr.obj["spec"].get("volumeName"):
            return wr.obj["spec"]["volumeName"]
    return None


MATCH = [
    ("the smallest volume that fits", pvc(size="1500Mi"),
     [pv("small", "1Gi"), pv("big", "5Gi"), pv("mid", "2Gi")], "mid"),
    ("storage class must match", pvc(), [pv("other", cls="fast"), pv("ok", "3Gi")], "ok"),
    ("access modes must be a subset", pvc(modes=("ReadWriteMany",)),
     [pv("rwo"), pv("rwx", "2Gi", modes=("ReadWriteOnce", "ReadWriteMany"))], "rwx"),
    ("volume mode must match", pvc(), [pv("block", mode="Block"), pv("fs", "2Gi")], "fs"),
    ("the claim's selector", pvc(selector={"matchLabels": {"tier": "gold"}}),
     [pv("plain"), pv("gold", "4Gi", labels={"tier": "gold"})], "gold"),
    ("a volume bound elsewhere is skipped", pvc(),
     [pv("taken", claim_ref={"namespace": "ns", "name": "other", "uid": "x"}), pv("free", "2Gi")], "free"),
    ("a volume pre-bound to the claim wins", pvc(),
     [pv("small"), pv("pre", "9Gi", claim_ref={"namespace": "ns", "name": "data"})], "pre"),
    ("a Released volume is not reused", pvc(), [pv("old", phase="Released")], None),
    ("nothing fits", pvc(size="10Gi"), [pv("small")], None),
]


@pytest.mark.parametrize("name,claim,volumes,want", MATCH, ids=[m[0] for m in MATCH])
def test_matching(name, claim, volumes, want):
    plan = B.decide_claim(claim, volumes, [], nodes={})
    assert bound_to(plan) == want


def test_binding_writes_in_kubernetes_order():
    plan = B.decide_claim(pvc(), [pv("v1")], [], nodes={})
    steps = [(wr.obj["kind"], wr.subresource) for wr in plan.writes]
    assert steps == [("PersistentVolume", ""), ("PersistentVolume", "status"), ("PersistentVolumeClaim", ""),
                     ("PersistentVolumeClaim", "status")]
    volume, volume_status, claim, claim_status = (wr.obj for wr in plan.writes)
    assert volume["spec"]["claimRef"] == {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": "ns",
                                          "name": "data", "uid": "uid-data", "resourceVersion": "9"}
    assert volume["metadata"]["annotations"][B.BOUND_BY_CONTROLLER] == "yes"
    assert volume_status["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"] == {B.BIND_COMPLETED: "yes", B.BOUND_BY_CONTROLLER: "yes"}
    assert claim_status["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    # once done, nothing more
    done_claim = {**claim, "status": claim_status["status"]}
    done_volume = {**volume, "status": {"phase": "Bound"}}
    assert B.decide_claim(done_claim, [done_volume], [], nodes={}).writes == []


def test_default_class_is_assigned_to_claims_without_one():
    plan = B.decide_claim(pvc(cls=None), [], [sc("local-path", default=True), sc("other")], nodes={})
    assert [wr.obj["spec"]["storageClassName"] for wr in plan.writes] == ["local-path"]


def test_immediate_local_path_provisions_unpinned():
    claim = pvc(cls="local-path", size="3Gi")
    plan = B.decide_claim(claim, [], [sc("local-path")], nodes={}, data_dir="/srv/ep")
    assert plan.writes[0].obj["metadata"]["annotations"][B.STORAGE_PROVISIONER] == B.PROVISIONER
    claim = plan.writes[0].obj
    plan = B.decide_claim(claim, [], [sc("local-path")], nodes={}, data_dir="/srv/ep")
    created = next(wr.obj for wr in plan.writes if wr.verb == "create")
    assert created["metadata"] == {"name": "pvc-uid-data", "annotations": {B.PROVISIONED_BY: B.PROVISIONER}}
    spec = created["spec"]
    assert spec["hostPath"] == {"path": "/srv/ep/volumes/pvc-uid-data", "type": "DirectoryOrCreate"}
    assert spec["capacity"] == {"storage": "3Gi"} and spec["storageClassName"] == "local-path"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete" and spec["claimRef"]["uid"] == "uid-data"
    assert "nodeAffinity" not in spec
    # the provisioned volume, once seen, is pre-bound to the claim and binds
    seen = {**created, "metadata": {**created["metadata"], "uid": "pv-uid", "resourceVersion": "12"},
            "status": {"phase": "Pending"}}
    assert bound_to(B.decide_claim(claim, [seen], [sc("local-path")], nodes={})) == "pvc-uid-data"


def test_wait_for_first_consumer():
    cls = [sc("local-path", mode="WaitForFirstConsumer")]
    claim = pvc(cls="local-path", annotations={B.STORAGE_PROVISIONER: B.PROVISIONER})
    plan = B.decide_claim(claim, [], cls, nodes={})
    assert plan.writes == [] and "waiting for first consumer" in plan.note
    plan = B.decide_claim(claim, [], cls, nodes={}, consumer_node="n2")
    claim = plan.writes[0].obj
    assert claim["metadata"]["annotations"][B.SELECTED_NODE] == "n2"
    plan = B.decide_claim(claim, [], cls, nodes={"n2": node("n2")})
    created = next(wr.obj for wr in plan.writes if wr.verb == "create")
    assert created["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]


def test_wait_for_first_consumer_binds_only_volumes_on_the_selected_node():
    cls = [sc("manual", provisioner="kubernetes.io/no-provisioner", mode="WaitForFirstConsumer")]
    claim = pvc(annotations={B.SELECTED_NODE: "n1"})
    volumes = [pv("on-n2", node="n2"), pv("on-n1", "2Gi", node="n1")]
    assert bound_to(B.decide_claim(claim, volumes, cls, nodes={"n1": node("n1"), "n2": node("n2")})) == "on-n1"


def test_other_provisioners_are_left_alone():
    claim = pvc(cls="ebs", annotations={B.STORAGE_PROVISIONER: "ebs.csi.aws.com"})
    plan = B.decide_claim(claim, [], [sc("ebs", "ebs.csi.aws.com")], nodes={}, data_dir="/x")
    assert all(wr.verb != "create" for wr in plan.writes) and "external provisioner" in plan.note


def test_claim_whose_volume_is_gone_is_lost():
    plan = B.decide_claim(pvc(volume="gone", phase="Bound"), [], [], nodes={})
    assert [wr.obj["status"]["phase"] for wr in plan.writes] == ["Lost"]


REF = {"namespace": "ns", "name": "data", "uid": "uid-data"}


@pytest.mark.parametrize("name,volume,claims,want", [
    ("no claimRef: Available", pv("v", phase="Pending"), {}, ("update", "Available")),
    ("already Available: nothing", pv("v"), {}, None),
    ("bound claim: Bound", pv("v", claim_ref=REF), {"ns/data": pvc(volume="v")}, ("update", "Bound")),
    ("claim gone, Retain: Released", pv("v", claim_ref=REF, phase="Bound"), {}, ("update", "Released")),
    ("claim gone, Delete, provisioned here: deleted",
     pv("v", claim_ref=REF, phase="Bound", policy="Delete", annotations={B.PROVISIONED_BY: B.PROVISIONER}), {},
     ("delete", None)),
    ("claim gone, Delete, made by someone else: Released",
     pv("v", claim_ref=REF, phase="Bound", policy="Delete"), {}, ("update", "Released")),
    ("a new claim of the same name is not ours", pv("v", claim_ref=REF, phase="Bound"),
     {"ns/data": {**pvc(volume="v"), "metadata": {"name": "data", "namespace": "ns", "uid": "new"}}},
     ("update", "Released")),
    ("pre-bound by a user to a claim yet to come", pv("v", claim_ref={"namespace": "ns", "name": "later"},
                                                      phase="Pending"), {}, ("update", "Available")),
])
def test_decide_volume(name, volume, claims, want):
    plan = B.decide_volume(volume, claims)
    if want is None:
        assert plan.writes == []
    else:
        [wr] = plan.writes
        assert wr.verb == want[0]
        if want[1]:
            assert wr.subresource == "status" and wr.obj["status"]["phase"] == want[1]
