"""The create fast path of managedFields (one walk, fieldsV1 written directly) gives exactly what
the general path (compare against nothing, then encode the set) gives, field order included."""
import copy
import json

import pytest

from eventplane.objects.errors import BadRequestError
from eventplane.objects.patch import update_managed_fields
from eventplane.objects.patch.fieldpaths import created_fields_v1, schema, scope_for
from eventplane.objects.schema import Node

NOW = "2024-01-01T00:00:00Z"

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default", "uid": "u", "generation": 1, "resourceVersion": "3",
                 "creationTimestamp": NOW, "labels": {"app": "web", "z": "1"}, "annotations": {},
                 "finalizers": ["b.io/x", "a.io/y", "b.io/x"],
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "o-1"}]},
    "spec": {"containers": [
        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
         "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": None}], "args": ["-x", "-y"],
         "resources": {}},
        {"name": "side", "image": "busybox", "command": [], "securityContext": {"privileged": True}}],
        "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k", "operator": "Exists"}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30.0},
    "status": {"phase": "Pending"},
}

SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
    "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 80, "protocol": "UDP", "name": "dns"},
                       {"port": 80, "name": "http-again"}],
             "selector": {"app": "web"}, "clusterIP": None},
}

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}],
                                   "volumes": [{"name": "v", "emptyDir": {}}]}}},
    "status": {"replicas": 2},
}

CRD_SCHEMA = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
    "spec": {"type": "object", "properties": {
        "size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"},
                                              "x-kubernetes-list-type": "set"},
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                  "items": {"type": "object", "properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "atomic": {"type": "object", "x-kubernetes-map-type": "atomic",
                   "properties": {"a": {"type": "string"}}}}},
    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}

CUSTOM = {
    "apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t", "labels": {"l": "v"}},
    "spec": {"size": 3, "tags": ["a", "b", "a"], "items": [{"id": "1", "v": 1}, {"id": "2"}],
             "free": {"nested": {"list": [1, {"x": None}], "m": {}}}, "atomic": {"a": "x"}},
    "status": {"ok": True},
}

CASES = [
    pytest.param(POD, Node.definition("io.k8s.api.core.v1.Pod"), "", id="pod"),
    pytest.param(POD, Node.definition("io.k8s.api.core.v1.Pod"), "status", id="pod-status"),
    pytest.param(SERVICE, Node.definition("io.k8s.api.core.v1.Service"), "", id="service"),
    pytest.param(DEPLOYMENT, Node.definition("io.k8s.api.apps.v1.Deployment"), "", id="deployment"),
    pytest.param(CUSTOM, Node.custom(CRD_SCHEMA), "", id="custom"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"}},
                 Node.definition("io.k8s.api.core.v1.ConfigMap"), "", id="nothing-tracked"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {}},
                 Node.definition("io.k8s.api.core.v1.ConfigMap"), "", id="empty-data"),
]


def general(obj, node, subresource):
    """The general path: `managedFields: []` in the request forces it and means "start from none"."""
    forced = copy.deepcopy(obj)
    forced.setdefault("metadata", {})["managedFields"] = []
    return update_managed_fields(None, forced, node, manager="m", api_version="v1", now=NOW,
                                 subresource=subresource)


@pytest.mark.parametrize("obj,node,subresource", CASES)
def test_create_fast_path_equals_the_general_path(obj, node, subresource):
    fast = update_managed_fields(None, copy.deepcopy(obj), node, manager="m", api_version="v1", now=NOW,
                                 subresource=subresource)
    slow = general(obj, node, subresource)
    assert json.dumps(fast) == json.dumps(slow)  # equal, keys in the same order too
    assert obj["metadata"].get("managedFields") is None  # the input is untouched
    node = schema(node)
    direct = created_fields_v1(obj, node, scope_for(node, subresource))  # the fast path itself
    assert direct is not None
    assert json.dumps(direct) == json.dumps(slow["metadata"]["managedFields"][0]["fieldsV1"]
                                            if slow["metadata"].get("managedFields") else {})


def test_create_fast_path_records_the_writer():
    out = update_managed_fields(None, copy.deepcopy(SERVICE), Node.definition("io.k8s.api.core.v1.Service"),
                                manager="kubectl-create", api_version="v1", now=NOW)
    [entry] = out["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create" and entry["time"] == NOW
    ports = entry["fieldsV1"]["f:spec"]["f:ports"]
    # the repeated port 80/TCP is recorded once, without what is under it
    assert ports['k:{"port":80,"protocol":"TCP"}'] == {}
    assert ports['k:{"port":80,"protocol":"UDP"}'] == {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}}


def test_create_fast_path_refuses_a_non_map_item_of_an_associative_list():
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": ["web"]}}
    with pytest.raises(BadRequestError):
        update_managed_fields(None, bad, Node.definition("io.k8s.api.core.v1.Pod"), manager="m",
                              api_version="v1", now=NOW)
    with pytest.raises(BadRequestError):
        general(bad, Node.definition("io.k8s.api.core.v1.Pod"), "")
