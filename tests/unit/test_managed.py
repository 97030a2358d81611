import copy

import pytest

from eventplane.objects.errors import BadRequestError
from eventplane.objects.patch import (
    decode_managed_fields, fieldset, from_fields_v1, path_string, to_fields_v1, update_managed_fields,
)
from eventplane.objects.patch.managed import ANCIENT_CHANGES, cap_update_managers
from eventplane.objects.schema import Node

DEPLOYMENT_NODE = Node.definition("io.k8s.api.apps.v1.Deployment")
CONFIGMAP_NODE = Node.definition("io.k8s.api.core.v1.ConfigMap")
NODE_NODE = Node.definition("io.k8s.api.core.v1.Node")
T0, T1, T2, T3 = (f"2024-01-01T00:0{i}:00Z" for i in range(4))

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "7", "generation": 1,
                 "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web"}},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}},
    "status": {"replicas": 2},
}

# managedFields as kube-apiserver wrote them for `kubectl create deployment web --image=nginx`
KUBECTL_CREATE_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {},
        "f:replicas": {},
        "f:selector": {},
        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {},
                "f:terminationGracePeriodSeconds": {}},
        },
    },
}


def managed(obj):
    return obj["metadata"].get("managedFields", [])


def by_manager(obj):
    return {m["manager"]: m for m in managed(obj)}


def test_fields_v1_round_trip():
    fields = from_fields_v1(KUBECTL_CREATE_FIELDS)
    assert to_fields_v1(fields) == KUBECTL_CREATE_FIELDS
    assert (("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"),
            ("k", (("name", '"nginx"'),))) in fields
    assert (("f", "spec"), ("f", "strategy")) not in fields  # no "." there: not a member


@pytest.mark.parametrize("fields_v1, text", [
    ({"f:spec": {"f:replicas": {}}}, ".spec.replicas"),
    ({"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}, '.spec.containers[name="web"].image'),
    ({"f:spec": {"f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {}}}},
     '.spec.ports[containerPort=80,protocol="TCP"]'),
    ({"f:metadata": {"f:finalizers": {'v:"example.com/x"': {}}}}, '.metadata.finalizers[="example.com/x"]'),
    ({"f:spec": {"f:args": {"i:2": {}}}}, ".spec.args[2]"),
])
def test_paths_print_as_kubernetes_prints_them(fields_v1, text):
    [path] = from_fields_v1(fields_v1)
    assert path_string(path) == text
    assert to_fields_v1({path}) == fields_v1


def test_fields_v1_sorts_fields_then_keys_then_values():
    fields = from_fields_v1({"f:x": {'v:"b"': {}, 'v:1': {}, 'v:"a"': {}, "f:z": {}, 'k:{"n":"a"}': {}}})
    assert list(to_fields_v1(fields)["f:x"]) == ["f:z", 'k:{"n":"a"}', "v:1", 'v:"a"', 'v:"b"']


@pytest.mark.parametrize("bad", [
    {"f:spec": "x"}, {'k:{"name"': {}}, {"q:nope": {}},
])
def test_malformed_fields_v1_is_400(bad):
    with pytest.raises(BadRequestError):
        from_fields_v1(bad)


def test_fieldset_ignores_server_metadata_and_status():
    fields = to_fields_v1(fieldset(DEPLOYMENT, DEPLOYMENT_NODE))
    assert fields == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}}}},
    }
    assert to_fields_v1(fieldset(DEPLOYMENT, DEPLOYMENT_NODE, subresource="status")) == {
        "f:metadata": {"f:labels": {"f:app": {}}}, "f:status": {"f:replicas": {}}}


def test_create_then_label():
    created = update_managed_fields(None, DEPLOYMENT, DEPLOYMENT_NODE, manager="kubectl-create",
                                    api_version="apps/v1", now=T0)
    [entry] = managed(created)
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert "f:status" not in entry["fieldsV1"]

    labelled = copy.deepcopy(created)
    labelled["metadata"]["labels"]["env"] = "prod"
    labelled["metadata"]["labels"]["app"] = "frontend"
    out = update_managed_fields(created, labelled, DEPLOYMENT_NODE, manager="kubectl-label",
                                api_version="apps/v1", now=T1)
    owners = by_manager(out)
    assert owners["kubectl-label"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:app": {}, "f:env": {}}}}
    assert owners["kubectl-label"]["time"] == T1
    assert owners["kubectl-create"]["fieldsV1"]["f:metadata"] == {"f:labels": {}}  # still owns the map
    assert owners["kubectl-create"]["time"] == T0
    assert [m["manager"] for m in managed(out)] == ["kubectl-create", "kubectl-label"]
    assert labelled["metadata"]["managedFields"] == created["metadata"]["managedFields"], "input not mutated"


def test_removing_a_field_takes_it_from_its_owner_and_drops_empty_entries():
    created = update_managed_fields(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                           "data": {"a": "1"}},
                                    CONFIGMAP_NODE, manager="kubectl-create", api_version="v1", now=T0)
    added = copy.deepcopy(created)
    added["data"]["b"] = "2"
    added = update_managed_fields(created, added, CONFIGMAP_NODE, manager="kubectl-edit", api_version="v1", now=T1)
    removed = copy.deepcopy(added)
    del removed["data"]["b"]
    out = update_managed_fields(added, removed, CONFIGMAP_NODE, manager="kubectl-patch", api_version="v1", now=T2)
    assert [m["manager"] for m in managed(out)] == ["kubectl-create"]


def test_a_write_that_changes_nothing_records_nothing():
    created = update_managed_fields(None, DEPLOYMENT, DEPLOYMENT_NODE, manager="kubectl-create",
                                    api_version="apps/v1", now=T0)
    out = update_managed_fields(created, copy.deepcopy(created), DEPLOYMENT_NODE, manager="kubectl-edit",
                                api_version="apps/v1", now=T1)
    assert managed(out) == managed(created)


def test_one_manager_has_an_entry_per_api_version():
    created = update_managed_fields(None, DEPLOYMENT, DEPLOYMENT_NODE, manager="m", api_version="apps/v1", now=T0)
    changed = copy.deepcopy(created)
    changed["spec"]["replicas"] = 3
    out = update_managed_fields(created, changed, DEPLOYMENT_NODE, manager="m", api_version="apps/v1beta2", now=T1)
    assert [(m["manager"], m["apiVersion"]) for m in managed(out)] == [("m", "apps/v1"), ("m", "apps/v1beta2")]


@pytest.mark.parametrize("requested, expected", [
    ([], ["kubectl-edit"]),        # an empty list resets managedFields
    ([{}], ["kubectl-edit"]),      # so does a list holding one empty entry
    (None, ["kubectl-create", "kubectl-edit"]),  # absent: the stored entries are kept
])
def test_managed_fields_in_the_request(requested, expected):
    created = update_managed_fields(None, DEPLOYMENT, DEPLOYMENT_NODE, manager="kubectl-create",
                                    api_version="apps/v1", now=T0)
    changed = copy.deepcopy(created)
    changed["spec"]["replicas"] = 4
    if requested is None:
        del changed["metadata"]["managedFields"]
    else:
        changed["metadata"]["managedFields"] = requested
    out = update_managed_fields(created, changed, DEPLOYMENT_NODE, manager="kubectl-edit",
                                api_version="apps/v1", now=T1)
    assert [m["manager"] for m in managed(out)] == expected


def test_status_subresource_writes_an_entry_of_its_own():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"capacity": {"cpu": "4"}}}
    created = update_managed_fields(None, node, NODE_NODE, manager="kubelet", api_version="v1", now=T0)
    assert "f:status" not in by_manager(created)["kubelet"]["fieldsV1"]
    reported = copy.deepcopy(created)
    reported["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    out = update_managed_fields(created, reported, NODE_NODE, manager="kubelet", api_version="v1", now=T1,
                                subresource="status")
    [status_entry] = [m for m in managed(out) if m.get("subresource") == "status"]
    assert status_entry["fieldsV1"] == {"f:status": {"f:conditions": {".": {}, 'k:{"type":"Ready"}': {
        ".": {}, "f:status": {}, "f:type": {}}}}}


def test_entries_are_sorted_apply_first_then_by_time():
    entries = [
        {"manager": "z", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsV1": {"f:a": {}}},
        {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": T2, "fieldsV1": {"f:b": {}}},
        {"manager": "m", "operation": "Apply", "apiVersion": "v1", "time": T3, "fieldsV1": {"f:c": {}}},
        {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsV1": {"f:d": {}}},
    ]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": entries}, "data": {}}
    changed = copy.deepcopy(cm)
    changed["data"]["x"] = "1"
    out = update_managed_fields(cm, changed, CONFIGMAP_NODE, manager="c", api_version="v1", now=T1)
    assert [m["manager"] for m in managed(out)] == ["m", "b", "z", "c", "a"]


def test_update_managers_are_capped():
    entries = [{"manager": f"m{i:02}", "operation": "Update", "apiVersion": "v1",
                "time": f"2024-01-01T00:{i:02}:00Z", "fieldsV1": {f"f:k{i}": {}}} for i in range(12)]
    capped = cap_update_managers(decode_managed_fields(entries))
    names = sorted(e.manager for e in capped.values())
    assert len(names) == 10 and ANCIENT_CHANGES in names and "m00" not in names and "m02" not in names
    [bucket] = [e for e in capped.values() if e.manager == ANCIENT_CHANGES]
    assert to_fields_v1(bucket.fields) == {"f:k0": {}, "f:k1": {}, "f:k2": {}}


@pytest.mark.parametrize("entries", [
    [{"manager": "a", "operation": "Patch", "fieldsV1": {}}],
    [{"manager": "a", "operation": "Update", "fieldsType": "FieldsV2", "fieldsV1": {}}],
    [{"manager": "a", "operation": "Update", "apiVersion": "v1"}] * 2,
    "not a list",
])
def test_malformed_entries_do_not_decode(entries):
    with pytest.raises(BadRequestError):
        decode_managed_fields(entries)


def test_undecodable_stored_entries_are_forgotten():
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "c", "managedFields": [{"operation": "Bogus"}]}, "data": {"a": "1"}}
    changed = copy.deepcopy(cm)
    changed["data"]["a"] = "2"
    del changed["metadata"]["managedFields"]
    out = update_managed_fields(cm, changed, CONFIGMAP_NODE, manager="x", api_version="v1", now=T1)
    assert [m["manager"] for m in managed(out)] == ["x"]


def test_a_create_takes_what_it_sets_from_entries_it_carries():
    # As in Kubernetes: a create compares against an empty object, so every field it sets is
    # "added" and moves to the creating manager, whatever entries the request carried.
    given = [{"manager": "migrated", "operation": "Apply", "apiVersion": "v1", "time": T0,
              "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}, "f:gone": {}}}}]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": given},
          "data": {"a": "1", "b": "2"}}
    out = update_managed_fields(None, cm, CONFIGMAP_NODE, manager="kubectl-create", api_version="v1", now=T1)
    assert [(m["manager"], m["fieldsV1"]) for m in managed(out)] == [
        ("migrated", {"f:data": {"f:gone": {}}}),
        ("kubectl-create", {"f:data": {".": {}, "f:a": {}, "f:b": {}}})]
