import copy

import pytest

from eventplane.objects.errors import BadRequestError, InvalidError
from eventplane.objects.patch import (
    apply_strategic_merge_patch, create_three_way_merge_patch, create_two_way_merge_patch,
)
from eventplane.objects.schema import Node

DEPLOYMENT_NODE = Node.definition("io.k8s.api.apps.v1.Deployment")
POD_NODE = Node.definition("io.k8s.api.core.v1.Pod")
SERVICE_NODE = Node.definition("io.k8s.api.core.v1.Service")
CONFIGMAP_NODE = Node.definition("io.k8s.api.core.v1.ConfigMap")

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "frontend"},
                 "finalizers": ["example.com/a", "example.com/b"]},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "0"}]},
                    {"name": "log", "image": "busybox"},
                ],
            },
        },
    },
}


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def names(items):
    return [i["name"] for i in items]


@pytest.mark.parametrize("name, patch, check", [
    ("a container merges by name",
     {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}},
     lambda o: pod_spec(o)["containers"][0] == {**pod_spec(DEPLOYMENT)["containers"][0], "image": "nginx:1.27"}
     and pod_spec(o)["containers"][1] == pod_spec(DEPLOYMENT)["containers"][1]),
    ("a new container comes first, as Kubernetes places it",
     {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy"}]}}}},
     lambda o: names(pod_spec(o)["containers"]) == ["sidecar", "nginx", "log"]),
    ("$setElementOrder puts a new container last",
     {"spec": {"template": {"spec": {
         "$setElementOrder/containers": [{"name": "nginx"}, {"name": "log"}, {"name": "sidecar"}],
         "containers": [{"name": "sidecar", "image": "envoy"}]}}}},
     lambda o: names(pod_spec(o)["containers"]) == ["nginx", "log", "sidecar"]),
    ("$setElementOrder reorders without content",
     {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "log"}, {"name": "nginx"}]}}}},
     lambda o: names(pod_spec(o)["containers"]) == ["log", "nginx"]),
    ("ports merge by containerPort",
     {"spec": {"template": {"spec": {"containers": [
         {"name": "nginx",
          "ports": [{"containerPort": 443, "protocol": "TCP"}, {"containerPort": 80, "name": "http"}]}]}}}},
     lambda o: pod_spec(o)["containers"][0]["ports"] == [
         {"containerPort": 443, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP", "name": "http"}]),
    ("env removal with $patch: delete",
     {"spec": {"template": {"spec": {"containers": [
         {"name": "nginx", "env": [{"name": "DEBUG", "$patch": "delete"}]}]}}}},
     lambda o: pod_spec(o)["containers"][0]["env"] == [{"name": "MODE", "value": "prod"}]),
    ("a container removal with $patch: delete",
     {"spec": {"template": {"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}}},
     lambda o: names(pod_spec(o)["containers"]) == ["nginx"]),
    ("$patch: replace on a list replaces it",
     {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}},
     lambda o: pod_spec(o)["containers"] == [{"name": "only", "image": "x"}]),
    ("$patch: replace on a map replaces it",
     {"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "api"}}}},
     lambda o: o["spec"]["selector"] == {"matchLabels": {"app": "api"}}),
    ("$patch: delete on a map empties it",
     {"metadata": {"labels": {"$patch": "delete"}}},
     lambda o: o["metadata"]["labels"] == {}),
    ("$patch: merge on a map is the default",
     {"metadata": {"labels": {"$patch": "merge", "x": "y"}}},
     lambda o: o["metadata"]["labels"] == {"app": "web", "tier": "frontend", "x": "y"}),
    ("$retainKeys switches the strategy to Recreate",
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     lambda o: o["spec"]["strategy"] == {"type": "Recreate"}),
    ("without $retainKeys rollingUpdate stays",
     {"spec": {"strategy": {"type": "Recreate"}}},
     lambda o: o["spec"]["strategy"] == {"type": "Recreate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    ("a toleration list has no merge key: it is replaced",
     {"spec": {"template": {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}}},
     lambda o: pod_spec(o)["tolerations"] == [{"key": "gpu", "operator": "Exists"}]),
    ("finalizers merge as a set, new ones first",
     {"metadata": {"finalizers": ["example.com/c", "example.com/a"]}},
     lambda o: o["metadata"]["finalizers"] == ["example.com/c", "example.com/a", "example.com/b"]),
    ("$deleteFromPrimitiveList removes a finalizer",
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}},
     lambda o: o["metadata"]["finalizers"] == ["example.com/b"]),
    ("$setElementOrder on a primitive list",
     {"metadata": {"$setElementOrder/finalizers": ["example.com/b", "example.com/c", "example.com/a"],
                   "finalizers": ["example.com/c"]}},
     lambda o: o["metadata"]["finalizers"] == ["example.com/b", "example.com/c", "example.com/a"]),
    ("null deletes a label", {"metadata": {"labels": {"tier": None}}},
     lambda o: o["metadata"]["labels"] == {"app": "web"}),
    ("null for a missing key is dropped", {"metadata": {"annotations": {"a": None, "b": "1"}}},
     lambda o: o["metadata"]["annotations"] == {"b": "1"}),
    ("null deletes a field", {"spec": {"strategy": None}}, lambda o: "strategy" not in o["spec"]),
    ("directives in a new map are processed, not stored",
     {"spec": {"template": {"spec": {"nodeSelector": {"$patch": "replace", "disk": "ssd"}}}}},
     lambda o: pod_spec(o)["nodeSelector"] == {"disk": "ssd"}),
    ("scalars replace", {"spec": {"replicas": 5}}, lambda o: o["spec"]["replicas"] == 5),
])
def test_patch_deployment(name, patch, check):
    original = copy.deepcopy(DEPLOYMENT)
    assert check(apply_strategic_merge_patch(DEPLOYMENT, patch, DEPLOYMENT_NODE)), name
    assert DEPLOYMENT == original, "the input must not be mutated"


def test_patch_pod_volume_source_switch_with_retain_keys():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "x"}],
                    "volumes": [{"name": "config", "configMap": {"name": "settings"}},
                                {"name": "cache", "emptyDir": {}}]}}
    patch = {"spec": {"volumes": [{"name": "config", "$retainKeys": ["name", "secret"],
                                   "secret": {"secretName": "settings"}}]}}
    out = apply_strategic_merge_patch(pod, patch, POD_NODE)
    assert out["spec"]["volumes"] == [{"name": "config", "secret": {"secretName": "settings"}},
                                      {"name": "cache", "emptyDir": {}}]


def test_patch_service_ports_merge_by_port():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "https", "port": 443}]}}
    out = apply_strategic_merge_patch(svc, patch, SERVICE_NODE)
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                                    {"name": "https", "port": 443}]


def test_patch_configmap_data_is_a_map():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    out = apply_strategic_merge_patch(cm, {"data": {"a": None, "c": "3"}}, CONFIGMAP_NODE)
    assert out["data"] == {"b": "2", "c": "3"}


@pytest.mark.parametrize("name, patch, message", [
    ("unknown $patch", {"spec": {"template": {"spec": {"containers": [{"name": "log", "$patch": "rotate"}]}}}},
     "unknown patch type: rotate in map: map[$patch:rotate name:log]"),
    ("$patch: merge in a list", {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}},
     "merging lists cannot yet be specified in the patch"),
    ("an item without its merge key", {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
     "map: map[image:x] does not contain declared merge key: name"),
    ("$retainKeys that is not a list", {"spec": {"strategy": {"$retainKeys": "type"}}},
     "invalid patch format of retainKeys"),
    ("$setElementOrder out of step with the patch",
     {"metadata": {"$setElementOrder/finalizers": ["example.com/a"], "finalizers": ["example.com/z"]}},
     "The order in patch list:\n[example.com/z]\n doesn't match $setElementOrder list:\n[example.com/a]\n"),
    ("a patch that is not an object", ["x"],
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
])
def test_malformed_patch_is_400(name, patch, message):
    with pytest.raises(BadRequestError) as err:
        apply_strategic_merge_patch(DEPLOYMENT, patch, DEPLOYMENT_NODE)
    assert err.value.message == message, name


@pytest.mark.parametrize("name, patch, cause", [
    ("content outside $retainKeys",
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}},
     "patch content doesn't match retainKeys list"),
    ("a list of lists", {"metadata": {"finalizers": [["x"]]}}, "lists of lists are not supported"),
])
def test_unprocessable_patch_is_422(name, patch, cause):
    with pytest.raises(InvalidError) as err:
        apply_strategic_merge_patch(DEPLOYMENT, patch, DEPLOYMENT_NODE)
    assert err.value.to_status()["details"]["causes"][0]["message"] == cause, name


# --- computing patches, as kubectl does ---------------------------------------------------------

def modified_deployment():
    out = copy.deepcopy(DEPLOYMENT)
    out["metadata"]["labels"]["tier"] = "web"
    out["metadata"]["finalizers"] = ["example.com/b", "example.com/c"]
    out["spec"]["strategy"] = {"type": "Recreate"}
    nginx = pod_spec(out)["containers"][0]
    nginx["image"] = "nginx:1.27"
    nginx["env"] = [{"name": "MODE", "value": "prod"}]
    pod_spec(out)["containers"].append({"name": "sidecar", "image": "envoy"})
    return out


def test_two_way_patch_round_trips():
    modified = modified_deployment()
    patch = create_two_way_merge_patch(DEPLOYMENT, modified, DEPLOYMENT_NODE)
    assert patch["spec"]["strategy"] == {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
    assert patch["metadata"]["$deleteFromPrimitiveList/finalizers"] == ["example.com/a"]
    assert pod_spec(patch)["$setElementOrder/containers"] == [{"name": "nginx"}, {"name": "log"}, {"name": "sidecar"}]
    assert apply_strategic_merge_patch(DEPLOYMENT, patch, DEPLOYMENT_NODE) == modified


def test_two_way_patch_of_equal_objects_is_empty():
    assert create_two_way_merge_patch(DEPLOYMENT, copy.deepcopy(DEPLOYMENT), DEPLOYMENT_NODE) == {}


def test_three_way_patch_keeps_what_others_set():
    last_applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}},
                    "data": {"x": "1"}}
    live = copy.deepcopy(last_applied)
    live["metadata"]["labels"]["set-by-someone-else"] = "yes"
    live["data"]["x"] = "changed-live"
    modified = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}},
                "data": {"x": "1", "y": "2"}}
    patch = create_three_way_merge_patch(last_applied, modified, live, CONFIGMAP_NODE)
    assert patch == {"metadata": {"labels": {"b": None}}, "data": {"x": "1", "y": "2"}}
    out = apply_strategic_merge_patch(live, patch, CONFIGMAP_NODE)
    assert out["metadata"]["labels"] == {"a": "1", "set-by-someone-else": "yes"}
    assert out["data"] == {"x": "1", "y": "2"}


def test_three_way_patch_deletes_a_container_kubectl_applied_before():
    last_applied = copy.deepcopy(DEPLOYMENT)
    live = copy.deepcopy(DEPLOYMENT)
    pod_spec(live)["containers"].append({"name": "injected", "image": "mesh"})
    modified = copy.deepcopy(DEPLOYMENT)
    del pod_spec(modified)["containers"][1]
    patch = create_three_way_merge_patch(last_applied, modified, live, DEPLOYMENT_NODE)
    out = apply_strategic_merge_patch(live, patch, DEPLOYMENT_NODE)
    assert names(pod_spec(out)["containers"]) == ["nginx", "injected"]


def test_null_patch_changes_nothing():
    assert apply_strategic_merge_patch(DEPLOYMENT, None, DEPLOYMENT_NODE) == DEPLOYMENT
