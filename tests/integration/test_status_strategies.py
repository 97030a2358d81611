"""The status subresource as Kubernetes' status strategies have it, kind by kind, over HTTPS: a
status write changes status; the spec it carries is silently ignored (200, not an error); the
metadata each kind's strategy resets (pods: ownerReferences; Deployments: labels; CRDs: labels,
annotations and ownerReferences; custom resources: all of it) is silently kept, and the rest of
the metadata may change; generation never moves. Plus the Deployment rule of the main resource:
an annotation change bumps generation there, and not through /status."""
from __future__ import annotations

import copy
from typing import Any

from tests.integration.test_api_crd import CRD

NS = "default"
TEMPLATE = {"metadata": {"labels": {"app": "s"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
JOB_TEMPLATE = {"metadata": {"labels": {"app": "s"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
SELECTOR = {"matchLabels": {"app": "s"}}

# Which metadata a status write may change, per kind (labels, annotations, ownerReferences,
# finalizers), as Kubernetes' PrepareForUpdate of each status strategy decides.
ALL = (True, True, True, True)


def case(path: str, kind: str, api_version: str, spec: dict | None, spec_change: tuple[str, Any],
         status: dict, may_change: tuple[bool, bool, bool, bool] = ALL, **extra: Any) -> dict:
    return {"path": path, "kind": kind, "apiVersion": api_version, "spec": spec, "spec_change": spec_change,
            "status": status, "may_change": may_change, "extra": extra}


CASES = [
    case(f"/api/v1/namespaces/{NS}/pods", "Pod", "v1", {"containers": [{"name": "c", "image": "busybox"}]},
         ("activeDeadlineSeconds", 99), {"phase": "Running"}, (True, True, False, True)),
    case("/api/v1/nodes", "Node", "v1", {}, ("unschedulable", True), {"capacity": {"cpu": "4"}}),
    case(f"/api/v1/namespaces/{NS}/services", "Service", "v1", {"ports": [{"port": 80}], "selector": {"app": "s"}},
         ("sessionAffinity", "ClientIP"), {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
    case("/api/v1/namespaces", "Namespace", "v1", {}, ("finalizers", ["kubernetes", "example.com/more"]),
         {"phase": "Active", "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False"}]}),
    case("/api/v1/persistentvolumes", "PersistentVolume", "v1",
         {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv"}},
         ("persistentVolumeReclaimPolicy", "Delete"), {"phase": "Available"}),
    case(f"/api/v1/namespaces/{NS}/persistentvolumeclaims", "PersistentVolumeClaim", "v1",
         {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
         ("volumeName", "pv-elsewhere"), {"phase": "Bound"}),
    case(f"/api/v1/namespaces/{NS}/resourcequotas", "ResourceQuota", "v1", {"hard": {"pods": "10"}},
         ("hard", {"pods": "20"}), {"hard": {"pods": "10"}, "used": {"pods": "0"}}),
    case(f"/api/v1/namespaces/{NS}/replicationcontrollers", "ReplicationController", "v1",
         {"replicas": 0, "selector": {"app": "s"}, "template": TEMPLATE}, ("replicas", 5),
         {"replicas": 0, "observedGeneration": 1}),
    case(f"/apis/apps/v1/namespaces/{NS}/deployments", "Deployment", "apps/v1",
         {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}, ("replicas", 5),
         {"replicas": 0, "observedGeneration": 1}, (False, True, True, True)),
    case(f"/apis/apps/v1/namespaces/{NS}/replicasets", "ReplicaSet", "apps/v1",
         {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}, ("replicas", 5),
         {"replicas": 0, "observedGeneration": 1}),
    case(f"/apis/apps/v1/namespaces/{NS}/statefulsets", "StatefulSet", "apps/v1",
         {"replicas": 0, "serviceName": "s", "selector": SELECTOR, "template": TEMPLATE}, ("replicas", 5),
         {"replicas": 0, "observedGeneration": 1}),
    case(f"/apis/apps/v1/namespaces/{NS}/daemonsets", "DaemonSet", "apps/v1",
         {"selector": SELECTOR, "template": TEMPLATE}, ("minReadySeconds", 5),
         {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0,
          "observedGeneration": 1}),
    case(f"/apis/batch/v1/namespaces/{NS}/jobs", "Job", "batch/v1",
         {"template": JOB_TEMPLATE, "suspend": True}, ("parallelism", 5), {"active": 0}),
    case(f"/apis/batch/v1/namespaces/{NS}/cronjobs", "CronJob", "batch/v1",
         {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": JOB_TEMPLATE}}}, ("suspend", True),
         {"lastScheduleTime": "2026-01-01T00:00:00Z"}),
    case(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", "PodDisruptionBudget", "policy/v1",
         {"minAvailable": 1, "selector": SELECTOR}, ("minAvailable", 3),
         {"currentHealthy": 0, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 0,
          "observedGeneration": 1}),
]


async def _status_write(api, c: dict, name: str, owner: dict) -> None:
    kind = c["kind"]
    body = {"apiVersion": c["apiVersion"], "kind": kind, "metadata": {"name": name, "labels": {"app": "s"}}}
    if c["spec"] is not None:
        body["spec"] = copy.deepcopy(c["spec"])
    code, created, _ = await api.http("POST", c["path"], body=body)
    assert code == 201, (kind, created)
    new = copy.deepcopy(created)
    field, value = c["spec_change"]
    new["spec"][field] = value
    m = new["metadata"]
    m["labels"] = {**m.get("labels", {}), "written": "by-status"}
    m["annotations"] = {**m.get("annotations", {}), "written": "by-status"}
    m["finalizers"] = [*m.get("finalizers", []), "example.com/status-test"]
    m["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                             "uid": owner["metadata"]["uid"]}]
    m["generation"] = 42
    new["status"] = copy.deepcopy(c["status"])
    code, answered, _ = await api.http("PUT", f"{c['path']}/{name}/status", body=new)
    assert code == 200, (kind, answered)
    code, stored, _ = await api.http("GET", f"{c['path']}/{name}")
    assert code == 200
    for got in (answered, stored):
        assert got["spec"] == created["spec"], (kind, "spec is the stored one", got["spec"])
        for key, value in c["status"].items():
            assert got["status"][key] == value, (kind, key, got["status"])
        gm = got["metadata"]
        assert gm.get("generation") == created["metadata"].get("generation"), (kind, "generation")
        labels, annotations, owners, finalizers = c["may_change"]
        assert (gm.get("labels", {}).get("written") == "by-status") == labels, (kind, "labels", gm)
        assert ((gm.get("annotations") or {}).get("written") == "by-status") == annotations, (kind, "annotations")
        assert bool(gm.get("ownerReferences")) == owners, (kind, "ownerReferences", gm)
        assert ("example.com/status-test" in (gm.get("finalizers") or [])) == finalizers, (kind, "finalizers")
    if kind == "Pod":   # status without qosClass: the class set at create stays (podStatusStrategy)
        assert stored["status"]["qosClass"] == created["status"]["qosClass"] == "BestEffort"
    if kind == "PersistentVolume":   # the phase changed: a new lastPhaseTransitionTime
        assert stored["status"]["lastPhaseTransitionTime"]


async def test_each_kinds_status_strategy_ignores_spec_and_resets_its_metadata(api):
    code, owner, _ = await api.http("POST", f"/api/v1/namespaces/{NS}/configmaps",
                                    body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    assert code == 201
    for i, c in enumerate(CASES):
        await _status_write(api, c, f"s{i}", owner)

    # CRDs: spec, labels, annotations and ownerReferences are the stored ones; finalizers may change.
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    described = copy.deepcopy(CRD)   # a schema with descriptions, as real CRDs have, taken under Strict
    described["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "A widget."
    code, crd, _ = await api.http("POST", f"{crd_path}?fieldValidation=Strict", body=described)
    assert code == 201, crd
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == "A widget."
    new = copy.deepcopy(crd)
    new["spec"]["names"]["shortNames"] = ["zz"]
    new["metadata"].update(labels={"written": "by-status"}, annotations={"written": "by-status"},
                           finalizers=["example.com/status-test"],
                           ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                             "uid": owner["metadata"]["uid"]}])
    new["status"]["conditions"].append({"type": "Checked", "status": "True", "reason": "Test", "message": "x",
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"})
    code, got, _ = await api.http("PUT", f"{crd_path}/widgets.example.com/status", body=new)
    assert code == 200, got
    assert got["spec"] == crd["spec"] and "Checked" in {c["type"] for c in got["status"]["conditions"]}
    assert not got["metadata"].get("labels") and not got["metadata"].get("annotations")
    assert not got["metadata"].get("ownerReferences")
    assert got["metadata"]["finalizers"] == ["example.com/status-test"]

    # Custom resources: a status write changes status alone.
    widgets = f"/apis/example.com/v1/namespaces/{NS}/widgets"
    code, w, _ = await api.http("POST", widgets, body={"apiVersion": "example.com/v1", "kind": "Widget",
                                                       "metadata": {"name": "w", "labels": {"a": "1"}},
                                                       "spec": {"size": 3}})
    assert code == 201, w
    new = copy.deepcopy(w)
    new["spec"]["size"] = 9
    new["metadata"]["labels"] = {"a": "2"}
    new["metadata"]["annotations"] = {"written": "by-status"}
    new["metadata"]["finalizers"] = ["example.com/status-test"]
    new["status"] = {"replicas": 2}
    code, got, _ = await api.http("PUT", f"{widgets}/w/status", body=new)
    assert code == 200, got
    assert got["spec"] == {"size": 3} and got["status"] == {"replicas": 2}
    assert got["metadata"]["labels"] == {"a": "1"} and not got["metadata"].get("annotations")
    assert not got["metadata"].get("finalizers") and got["metadata"]["generation"] == 1


async def test_deployment_annotations_bump_generation_through_the_resource_not_through_status(api):
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    code, d, _ = await api.http("POST", path, body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g", "labels": {"app": "s"}},
        "spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}})
    assert code == 201 and d["metadata"]["generation"] == 1
    # A merge patch of /status: annotations and status taken, spec and labels ignored, generation kept.
    code, d, _ = await api.http("PATCH", f"{path}/g/status", content_type="application/merge-patch+json", body={
        "metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}, "labels": {"app": "other"}},
        "spec": {"replicas": 3}, "status": {"observedGeneration": 1}})
    assert code == 200, d
    assert d["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert d["metadata"]["labels"] == {"app": "s"} and d["spec"]["replicas"] == 0
    assert d["metadata"]["generation"] == 1 and d["status"]["observedGeneration"] == 1
    # The same annotation change through the resource itself bumps generation (deploymentStrategy:
    # annotations are copied to the ReplicaSets); a label change does not.
    code, d, _ = await api.http("PATCH", f"{path}/g", content_type="application/merge-patch+json",
                                body={"metadata": {"labels": {"tier": "web"}}})
    assert code == 200 and d["metadata"]["generation"] == 1
    code, d, _ = await api.http("PATCH", f"{path}/g", content_type="application/merge-patch+json",
                                body={"metadata": {"annotations": {"note": "x"}}})
    assert code == 200 and d["metadata"]["generation"] == 2
    # Other kinds count spec alone: a ReplicaSet's annotation change leaves its generation.
    rs_path = f"/apis/apps/v1/namespaces/{NS}/replicasets"
    code, rs, _ = await api.http("POST", rs_path, body={
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
        "spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}})
    assert code == 201
    code, rs, _ = await api.http("PATCH", f"{rs_path}/r", content_type="application/merge-patch+json",
                                 body={"metadata": {"annotations": {"note": "x"}}})
    assert code == 200 and rs["metadata"]["generation"] == 1
