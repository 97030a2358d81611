"""The ResourceQuota controller's usage computation, table-style, without a server."""
from __future__ import annotations

import pytest

from reconcilers.controllers import resourcequota as R


def pod(name, *, phase="Running", requests=None, limits=None, init=None, deadline=None):
    spec = {"containers": [{"name": "c", "resources": {**({"requests": requests} if requests else {}),
                                                       **({"limits": limits} if limits else {})}}]}
    if init:
        spec["initContainers"] = [{"name": "i", "resources": {"requests": init}}]
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": {"phase": phase}}


def quota(hard, scopes=None):
    spec = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    return {"metadata": {"name": "q", "namespace": "ns"}, "spec": spec}


PODS = [pod("a", requests={"cpu": "250m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "128Mi"}),
        pod("b", requests={"cpu": "1", "memory": "1Gi"}, init={"cpu": "2"}),
        pod("c", phase="Succeeded", requests={"cpu": "4"}),
        pod("d")]
OBJECTS = {
    "pods": PODS,
    "services": [{"metadata": {"name": "s1"}, "spec": {"type": "ClusterIP"}},
                 {"metadata": {"name": "s2"}, "spec": {"type": "NodePort", "ports": [{"nodePort": 30001},
                                                                                    {"nodePort": 30002}]}},
                 {"metadata": {"name": "s3"}, "spec": {"type": "LoadBalancer", "ports": [{"nodePort": 30003}]}}],
    "configmaps": [{"metadata": {"name": "c1"}}, {"metadata": {"name": "c2"}}],
    "secrets": [{"metadata": {"name": "s"}}],
    "persistentvolumeclaims": [
        {"metadata": {"name": "p1"}, "spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}}},
        {"metadata": {"name": "p2"}, "spec": {"storageClassName": "bronze",
                                              "resources": {"requests": {"storage": "512Mi"}}}}],
    "deployments.apps": [{"metadata": {"name": "d1"}}],
}


@pytest.mark.parametrize("name,hard,want", [
    ("pods not finished", {"pods": "10"}, {"pods": "3"}),
    ("cpu requests: containers summed, init maxed", {"requests.cpu": "10"}, {"requests.cpu": "2250m"}),
    ("bare cpu means requests", {"cpu": "10"}, {"cpu": "2250m"}),
    ("memory in the hard value's format", {"requests.memory": "4Gi"}, {"requests.memory": "1088Mi"}),
    ("limits", {"limits.cpu": "4", "limits.memory": "1Gi"}, {"limits.cpu": "500m", "limits.memory": "128Mi"}),
    ("object counts", {"services": "5", "configmaps": "5", "secrets": "5", "persistentvolumeclaims": "5"},
     {"services": "3", "configmaps": "2", "secrets": "1", "persistentvolumeclaims": "2"}),
    ("service kinds", {"services.loadbalancers": "1", "services.nodeports": "9"},
     {"services.loadbalancers": "1", "services.nodeports": "3"}),
    ("storage", {"requests.storage": "10Gi", "gold.storageclass.storage.k8s.io/requests.storage": "5Gi",
                 "bronze.storageclass.storage.k8s.io/persistentvolumeclaims": "3"},
     {"requests.storage": "1536Mi", "gold.storageclass.storage.k8s.io/requests.storage": "1Gi",
      "bronze.storageclass.storage.k8s.io/persistentvolumeclaims": "1"}),
    ("count/ of any resource", {"count/deployments.apps": "2", "count/pods": "9"},
     {"count/deployments.apps": "1", "count/pods": "3"}),
])
def test_usage(name, hard, want):
    st = R.usage(quota(hard), OBJECTS)
    assert st["hard"] == hard and st["used"] == want


@pytest.mark.parametrize("scopes,count", [(["BestEffort"], 1), (["NotBestEffort"], 2), (["Terminating"], 1),
                                          (["NotTerminating"], 2)])
def test_scopes(scopes, count):
    pods = [pod("a", requests={"cpu": "1"}), pod("b"), pod("c", requests={"cpu": "1"}, deadline=30)]
    pods[1]["spec"]["activeDeadlineSeconds"] = None
    if scopes == ["Terminating"]:
        pods = [pods[0], pods[2]]
    assert R.usage(quota({"pods": "9"}, scopes), {"pods": pods})["used"]["pods"] == str(count)


@pytest.mark.parametrize("name,resource", [("pods", "pods"), ("requests.cpu", "pods"), ("limits.memory", "pods"),
                                           ("cpu", "pods"), ("services.nodeports", "services"),
                                           ("count/jobs.batch", "jobs.batch"), ("requests.storage",
                                                                                "persistentvolumeclaims"),
                                           ("x.storageclass.storage.k8s.io/requests.storage",
                                            "persistentvolumeclaims"), ("requests.nvidia.com/gpu", None)])
def test_resource_for(name, resource):
    assert R.resource_for(name) == resource


@pytest.mark.parametrize("expr,count", [
    ({"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}, 1),
    ({"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}, 2),
    ({"scopeName": "PriorityClass", "operator": "Exists"}, 2),
    ({"scopeName": "PriorityClass", "operator": "DoesNotExist"}, 1),
    ({"scopeName": "BestEffort", "operator": "Exists"}, 2),
    ({"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"}, 1),
])
def test_scope_selector(expr, count):
    high, low, none = pod("h"), pod("l", requests={"cpu": "1"}), pod("n")
    high["spec"]["priorityClassName"] = "high"
    low["spec"]["priorityClassName"] = "low"
    none["spec"]["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "namespaces": ["other"], "labelSelector": {}}]}}
    q = quota({"pods": "9"})
    q["spec"]["scopeSelector"] = {"matchExpressions": [expr]}
    assert R.usage(q, {"pods": [high, low, none]})["used"]["pods"] == str(count)
