"""CustomResourceDefinitions: creating one serves its resources, validated by its schema."""
from __future__ import annotations

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {"name": "v1", "served": True, "storage": True,
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                      "statusReplicasPath": ".status.replicas"}},
             "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                 "spec": {"type": "object", "required": ["size"], "properties": {
                     "size": {"type": "integer", "minimum": 1, "maximum": 10},
                     "color": {"type": "string", "enum": ["red", "blue"]},
                     "replicas": {"type": "integer"}}},
                 "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}},
            {"name": "v1beta1", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        ],
    },
}
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def test_crd_round_trip(api):
    status, crd, _ = await api.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=CRD)
    assert status == 201, crd
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {"NamesAccepted": "True",
                                                                            "Established": "True"}
    _, disc, _ = await api.http("GET", "/apis/example.com/v1")
    assert [r["name"] for r in disc["resources"]] == ["widgets", "widgets/status", "widgets/scale"]
    status, w, _ = await api.http("POST", WIDGETS, body={"apiVersion": "example.com/v1", "kind": "Widget",
                                                         "metadata": {"name": "w1"},
                                                         "spec": {"size": 3, "color": "red", "extra": 1}})
    assert status == 201, w
    assert "extra" not in w["spec"]  # pruned: not in the schema
    assert w["metadata"]["generation"] == 1
    status, err, _ = await api.http("POST", WIDGETS, body={"apiVersion": "example.com/v1", "kind": "Widget",
                                                           "metadata": {"name": "w2"},
                                                           "spec": {"size": 11, "color": "pink"}})
    assert status == 422 and err["reason"] == "Invalid"
    fields = {c["field"] for c in err["details"]["causes"]}
    assert fields == {"spec.size", "spec.color"}
    assert "spec.size in body should be less than or equal to 10" in err["message"]
    status, err, _ = await api.http("POST", WIDGETS, body={"apiVersion": "example.com/v1", "kind": "Widget",
                                                           "metadata": {"name": "w3"}, "spec": {}})
    assert status == 422 and err["details"]["causes"][0]["field"] == "spec.size"
    _, listed, _ = await api.http("GET", WIDGETS)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    _, other_version, _ = await api.http("GET", "/apis/example.com/v1beta1/namespaces/default/widgets/w1")
    assert other_version["apiVersion"] == "example.com/v1beta1" and other_version["spec"]["size"] == 3
    status, err, _ = await api.http("PATCH", f"{WIDGETS}/w1", body={"spec": {"size": 4}},
                                    content_type="application/strategic-merge-patch+json")
    assert status == 415
    status, w, _ = await api.http("PATCH", f"{WIDGETS}/w1", body={"spec": {"size": 4}},
                                  content_type="application/merge-patch+json")
    assert status == 200 and w["spec"]["size"] == 4 and w["metadata"]["generation"] == 2
    status, s, _ = await api.http("PUT", f"{WIDGETS}/w1/status", body={**w, "status": {"replicas": 2}})
    assert status == 200 and s["status"] == {"replicas": 2} and s["metadata"]["generation"] == 2
    _, index, _ = await api.http("GET", "/openapi/v3")
    assert "apis/example.com/v1" in index["paths"]


async def test_cluster_scoped_custom_resource(api):
    crd = {**CRD, "metadata": {"name": "gadgets.example.com"},
           "spec": {**CRD["spec"], "scope": "Cluster",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    status, _, _ = await api.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    assert status == 201
    status, g, _ = await api.http("POST", "/apis/example.com/v1/gadgets", body={
        "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "anything": {"goes": True}})
    assert status == 201 and g["anything"] == {"goes": True} and "namespace" not in g["metadata"]


async def test_scale_of_a_custom_resource_follows_the_crd_paths(api):
    crd = {**CRD, "metadata": {"name": "pools.example.com"},
           "spec": {**CRD["spec"], "names": {"plural": "pools", "singular": "pool", "kind": "Pool"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}, "scale": {
                                      "specReplicasPath": ".spec.workers.count",
                                      "statusReplicasPath": ".status.running",
                                      "labelSelectorPath": ".status.selector"}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    status, _, _ = await api.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    assert status == 201
    pools = "/apis/example.com/v1/namespaces/default/pools"
    status, p, _ = await api.http("POST", pools, body={"apiVersion": "example.com/v1", "kind": "Pool",
                                                       "metadata": {"name": "p1"},
                                                       "spec": {"workers": {"count": 3}, "replicas": 99}})
    assert status == 201, p
    await api.http("PATCH", f"{pools}/p1/status", body={"status": {"running": 2, "selector": "app=pool"}},
                   content_type="application/merge-patch+json")
    _, scale, _ = await api.http("GET", f"{pools}/p1/scale")
    assert (scale["spec"], scale["status"]) == ({"replicas": 3}, {"replicas": 2, "selector": "app=pool"})
    await api.ok("scale", "pool/p1", "--replicas=5")
    _, p, _ = await api.http("GET", f"{pools}/p1")
    assert p["spec"] == {"workers": {"count": 5}, "replicas": 99}     # the CRD's path, not spec.replicas


async def test_scale_of_a_deployment_states_its_whole_selector(api):
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sel"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "sel"},
                                                   "matchExpressions": [{"key": "tier", "operator": "In",
                                                                         "values": ["a", "b"]}]},
                       "template": {"metadata": {"labels": {"app": "sel", "tier": "a"}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    status, _, _ = await api.http("POST", "/apis/apps/v1/namespaces/default/deployments", body=deploy)
    assert status == 201
    _, scale, _ = await api.http("GET", "/apis/apps/v1/namespaces/default/deployments/sel/scale")
    assert scale["status"]["selector"] == "app=sel,tier in (a,b)" and scale["spec"]["replicas"] == 2
