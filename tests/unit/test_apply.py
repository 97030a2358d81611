import copy
import json

import pytest

from eventplane.objects.errors import ApplyConflictError, BadRequestError
from eventplane.objects.patch import (
    LAST_APPLIED, last_applied_configuration, server_side_apply, update_managed_fields,
)
from eventplane.objects.schema import Catalog, Node

DEPLOYMENT_NODE = Node.definition(Catalog.builtin().get("apps", "v1", "deployments").definition)
SERVICE_NODE = Node.definition("io.k8s.api.core.v1.Service")
T0, T1, T2, T3 = (f"2024-01-01T00:0{i}:00Z" for i in range(4))

CONFIG = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "frontend"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                {"name": "log", "image": "busybox"},
            ]},
        },
    },
}


def apply(live, config, manager="kubectl", *, force=False, now=T1, **kw):
    return server_side_apply(live, config, DEPLOYMENT_NODE, manager=manager, force=force,
                             api_version=kw.pop("api_version", "apps/v1"), now=now, **kw)


def entries(obj):
    return {(m["manager"], m["operation"]): m for m in obj["metadata"].get("managedFields", [])}


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def scale(replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas}}


def test_create_via_apply():
    out = apply(None, CONFIG, now=T0)
    assert {k: v for k, v in out.items() if k != "metadata"} == {k: v for k, v in CONFIG.items() if k != "metadata"}
    assert out["metadata"]["labels"] == CONFIG["metadata"]["labels"]
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},  # an atomic map is owned whole
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {
                        'k:{"name":"log"}': {".": {}, "f:image": {}, "f:name": {}},
                        'k:{"name":"nginx"}': {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                        },
                    }},
                },
            },
        },
    }]


def test_inputs_are_not_mutated():
    live = apply(None, CONFIG, now=T0)
    before_live, before_config = copy.deepcopy(live), copy.deepcopy(CONFIG)
    changed = copy.deepcopy(CONFIG)
    changed["spec"]["replicas"] = 7
    apply(live, changed)
    assert live == before_live and CONFIG == before_config


def test_reapply_without_a_field_removes_it():
    live = apply(None, CONFIG, now=T0)
    config = copy.deepcopy(CONFIG)
    del config["metadata"]["labels"]["tier"]
    del containers(config)[1]
    del config["spec"]["replicas"]
    out = apply(live, config)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in containers(out)] == ["nginx"]
    assert "replicas" not in out["spec"]
    fields = entries(out)[("kubectl", "Apply")]["fieldsV1"]
    assert "f:tier" not in fields["f:metadata"]["f:labels"]
    assert 'k:{"name":"log"}' not in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_a_field_another_manager_owns_survives_when_the_applier_drops_it():
    live = apply(None, CONFIG, now=T0)
    live = apply(live, scale(2), manager="hpa", now=T1)  # same value: shared ownership
    config = copy.deepcopy(CONFIG)
    del config["spec"]["replicas"]
    out = apply(live, config, now=T2)
    assert out["spec"]["replicas"] == 2
    assert "f:replicas" not in entries(out)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in entries(out)[("hpa", "Apply")]["fieldsV1"]["f:spec"]


def test_two_appliers_conflict_on_replicas():
    live = apply(None, CONFIG, manager="alice", now=T0)
    with pytest.raises(ApplyConflictError) as err:
        apply(live, scale(5), manager="bob")
    assert err.value.to_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas',
        "reason": "Conflict", "code": 409,
        "details": {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "alice"',
                                "field": ".spec.replicas"}]},
    }


def test_several_conflicts_are_listed_by_manager():
    live = apply(None, CONFIG, manager="alice", now=T0)
    config = copy.deepcopy(CONFIG)
    config["spec"]["replicas"] = 9
    containers(config)[0]["image"] = "nginx:1.27"
    with pytest.raises(ApplyConflictError) as err:
        apply(live, config, manager="bob")
    assert err.value.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n- .spec.replicas\n'
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c.field for c in err.value.causes] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']


def test_force_takes_ownership():
    live = apply(None, CONFIG, manager="alice", now=T0)
    out = apply(live, scale(5), manager="bob", force=True)
    assert out["spec"]["replicas"] == 5
    assert "f:replicas" not in entries(out)[("alice", "Apply")]["fieldsV1"]["f:spec"]
    assert entries(out)[("bob", "Apply")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    # alice re-applying her old value now conflicts with bob
    with pytest.raises(ApplyConflictError, match='conflict with "bob": .spec.replicas'):
        apply(out, CONFIG, manager="alice", now=T2)


def test_equal_values_are_shared_without_conflict():
    live = apply(None, CONFIG, manager="alice", now=T0)
    out = apply(live, scale(2), manager="bob")
    assert "f:replicas" in entries(out)[("alice", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in entries(out)[("bob", "Apply")]["fieldsV1"]["f:spec"]


def test_client_side_apply_owner_conflicts_with_a_server_side_applier():
    created = copy.deepcopy(CONFIG)
    created["metadata"]["annotations"] = {LAST_APPLIED: last_applied_configuration(CONFIG)}
    live = update_managed_fields(None, created, DEPLOYMENT_NODE, manager="kubectl-client-side-apply",
                                 api_version="apps/v1", now=T0)
    with pytest.raises(ApplyConflictError) as err:
        apply(live, scale(3), manager="ci")
    assert err.value.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                                 "using apps/v1: .spec.replicas")
    assert err.value.to_status()["details"]["causes"] == [{
        "reason": "FieldManagerConflict", "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas"}]


def test_kubectl_server_side_apply_takes_over_from_client_side_apply():
    created = copy.deepcopy(CONFIG)
    created["metadata"]["annotations"] = {LAST_APPLIED: last_applied_configuration(CONFIG)}
    live = update_managed_fields(None, created, DEPLOYMENT_NODE, manager="kubectl-client-side-apply",
                                 api_version="apps/v1", now=T0)
    config = copy.deepcopy(CONFIG)
    config["spec"]["replicas"] = 4
    out = apply(live, config, manager="kubectl")  # no force: the last-applied annotation vouches
    assert out["spec"]["replicas"] == 4
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED]) == config
    assert out["metadata"]["annotations"][LAST_APPLIED].endswith("\n")
    assert "f:replicas" not in entries(out)[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    # a field client-side apply never applied is still a conflict
    live2 = update_managed_fields(out, {**out, "spec": {**out["spec"], "paused": True}}, DEPLOYMENT_NODE,
                                  manager="kubectl-edit", api_version="apps/v1", now=T2)
    config2 = copy.deepcopy(config)
    config2["spec"]["paused"] = False
    with pytest.raises(ApplyConflictError, match='"kubectl-edit" using apps/v1: .spec.paused'):
        apply(live2, config2, manager="kubectl", now=T3)


def test_containers_merge_by_name_across_appliers():
    live = apply(None, CONFIG, manager="alice", now=T0)
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "mesh", "image": "envoy"}]}}}}
    out = apply(live, sidecar, manager="injector")
    assert [c["name"] for c in containers(out)] == ["nginx", "log", "mesh"]
    # alice re-applies without knowing about the sidecar: it stays
    out = apply(out, CONFIG, manager="alice", now=T2)
    assert [c["name"] for c in containers(out)] == ["nginx", "log", "mesh"]
    # the injector withdraws: the sidecar goes
    withdrawn = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    out = apply(out, withdrawn, manager="injector", now=T3)
    assert [c["name"] for c in containers(out)] == ["nginx", "log"]
    assert ("injector", "Apply") not in entries(out)


def test_list_order_follows_the_configuration_for_shared_items():
    live = apply(None, CONFIG, manager="alice", now=T0)
    config = copy.deepcopy(CONFIG)
    containers(config).reverse()
    out = apply(live, config, manager="alice")
    assert [c["name"] for c in containers(out)] == ["log", "nginx"]


def test_sets_are_unioned_and_atomic_lists_replaced():
    live = apply(None, {**CONFIG, "metadata": {**CONFIG["metadata"], "finalizers": ["example.com/a"]}},
                 manager="alice", now=T0)
    tolerations = [{"key": "gpu", "operator": "Exists"}]
    other = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web", "finalizers": ["example.com/b"]},
             "spec": {"template": {"spec": {"tolerations": tolerations}}}}
    out = apply(live, other, manager="bob")
    assert out["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]
    assert entries(out)[("bob", "Apply")]["fieldsV1"]["f:metadata"] == {"f:finalizers": {'v:"example.com/b"': {}}}
    assert out["spec"]["template"]["spec"]["tolerations"] == tolerations
    assert entries(out)[("bob", "Apply")]["fieldsV1"]["f:spec"]["f:template"]["f:spec"] == {"f:tolerations": {}}


def test_status_is_not_applied_to_the_main_resource():
    config = {**CONFIG, "status": {"replicas": 9}}
    out = apply(None, config, now=T0)
    assert "status" not in out
    assert "f:status" not in entries(out)[("kubectl", "Apply")]["fieldsV1"]


def test_status_subresource_applies_status_only():
    live = apply(None, CONFIG, now=T0)
    status = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 100}, "status": {"replicas": 2, "readyReplicas": 1}}
    out = apply(live, status, manager="deployment-controller", subresource="status")
    assert out["spec"]["replicas"] == 2 and out["status"] == {"replicas": 2, "readyReplicas": 1}
    entry = entries(out)[("deployment-controller", "Apply")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}


def test_reapplying_the_same_configuration_keeps_the_time():
    live = apply(None, CONFIG, now=T0)
    out = apply(live, CONFIG, now=T1)
    assert out == live


def test_managers_keep_kubernetes_order():
    live = update_managed_fields(None, CONFIG, DEPLOYMENT_NODE, manager="kubectl-create",
                                 api_version="apps/v1", now=T0)
    out = apply(live, {**scale(3)}, manager="hpa", force=True, now=T2)
    assert [(m["manager"], m["operation"]) for m in out["metadata"]["managedFields"]] == [
        ("hpa", "Apply"), ("kubectl-create", "Update")]


@pytest.mark.parametrize("name, config, message", [
    ("another version", {**CONFIG, "apiVersion": "apps/v1beta1"},
     "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1"),
    ("managedFields set", {**CONFIG, "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}},
     "metadata.managedFields must be nil"),
    ("duplicate containers",
     {**CONFIG, "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}},
     '.spec.template.spec.containers: duplicate entries for key [name="a"]'),
])
def test_malformed_configuration_is_400(name, config, message):
    with pytest.raises(BadRequestError) as err:
        apply(None, config)
    assert err.value.message == message, name


def test_service_ports_key_on_port_and_protocol():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    out = server_side_apply(None, svc, SERVICE_NODE, manager="kubectl", force=False, api_version="v1", now=T0)
    ports = out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert ports == {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}}


WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "backends": {"type": "array", "x-kubernetes-list-type": "map",
                         "x-kubernetes-list-map-keys": ["host", "port"],
                         "items": {"type": "object", "properties": {
                             "host": {"type": "string"}, "port": {"type": "integer"},
                             "weight": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }},
    },
}


def widget(**spec):
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_custom_resource_list_map():
    node = Node.custom(WIDGET_SCHEMA)

    def run(live, config, manager, now):
        return server_side_apply(live, config, node, manager=manager, force=False,
                                 api_version="example.com/v1", now=now)

    out = run(None, widget(backends=[{"host": "a", "port": 80, "weight": 1}], tags=["x"],
                           extra={"free": {"form": [1, 2]}}), "alice", T0)
    out = run(out, widget(backends=[{"host": "b", "port": 80, "weight": 2}], tags=["y"]), "bob", T1)
    assert out["spec"]["backends"] == [{"host": "a", "port": 80, "weight": 1}, {"host": "b", "port": 80, "weight": 2}]
    assert out["spec"]["tags"] == ["x", "y"]
    alice = entries(out)[("alice", "Apply")]["fieldsV1"]["f:spec"]
    assert alice == {
        "f:backends": {'k:{"host":"a","port":80}': {".": {}, "f:host": {}, "f:port": {}, "f:weight": {}}},
        "f:extra": {"f:free": {".": {}, "f:form": {}}},
        "f:tags": {'v:"x"': {}},
    }
    with pytest.raises(ApplyConflictError, match=r'\.spec\.backends\[host="a",port=80\]\.weight'):
        run(out, widget(backends=[{"host": "a", "port": 80, "weight": 5}]), "bob", T2)
    out = run(out, widget(), "alice", T2)
    assert out["spec"] == {"backends": [{"host": "b", "port": 80, "weight": 2}], "tags": ["y"]}


def test_untracked_fields_belong_to_before_first_apply():
    untracked = copy.deepcopy(CONFIG)  # written without managedFields, e.g. before tracking began
    with pytest.raises(ApplyConflictError) as err:
        apply(untracked, scale(3), manager="ci")
    assert err.value.message == ('Apply failed with 1 conflict: conflict with "before-first-apply" '
                                 "using apps/v1: .spec.replicas")
    out = apply(untracked, scale(2), manager="ci")  # the same value: shared, no conflict
    assert set(entries(out)) == {("ci", "Apply"), ("before-first-apply", "Update")}
    assert "f:replicas" in entries(out)[("before-first-apply", "Update")]["fieldsV1"]["f:spec"]
