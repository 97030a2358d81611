"""Endpoints and EndpointSlice decisions, table-style: no server."""
from __future__ import annotations

import pytest

from reconcilers.controllers.endpoints import endpoints_for, find_port, pod_changed, repack, should_be_in_endpoints
from reconcilers.controllers.endpointslice import MANAGED_BY, SERVICE_NAME, SliceWrites, plan


def svc(name="web", *, selector={"app": "web"}, ports=None, publish=False, cluster_ip="10.96.0.10", labels=None):
    spec = {"selector": selector, "clusterIP": cluster_ip,
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http",
                                                       "protocol": "TCP"}]}
    if publish:
        spec["publishNotReadyAddresses"] = True
    return {"metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": labels or {}},
            "spec": spec}


def pod(name, ip, *, ready=True, labels={"app": "web"}, port=8080, port_name="http", node="n1", deleting=False,
        phase="Running", ns="default"):
    meta = {"name": name, "namespace": ns, "uid": f"{name}-uid", "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [
        {"name": "c", "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}]}]}, "status": status}


def addr(name, ip, node="n1"):
    return {"ip": ip, "nodeName": node, "targetRef": {"kind": "Pod", "namespace": "default", "name": name,
                                                      "uid": f"{name}-uid"}}


HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}


@pytest.mark.parametrize("name,pods,service,subsets", [
    ("ready and not ready pods", [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)], svc(),
     [{"addresses": [addr("a", "10.0.0.1")], "notReadyAddresses": [addr("b", "10.0.0.2")], "ports": [HTTP]}]),
    ("publishNotReadyAddresses: every pod is an address", [pod("b", "10.0.0.2", ready=False)], svc(publish=True),
     [{"addresses": [addr("b", "10.0.0.2")], "ports": [HTTP]}]),
    ("no IP, terminal, other labels, other namespace, being deleted: left out",
     [pod("a", ""), pod("b", "10.0.0.2", phase="Succeeded"), pod("c", "10.0.0.3", labels={"app": "db"}),
      pod("d", "10.0.0.4", ns="other"), pod("e", "10.0.0.5", deleting=True)], svc(), []),
    ("a named port resolving differently splits the subsets",
     [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", port=9090)], svc(),
     [{"addresses": [addr("a", "10.0.0.1")], "ports": [HTTP]},
      {"addresses": [addr("b", "10.0.0.2")], "ports": [{**HTTP, "port": 9090}]}]),
    ("a pod without the named port does not serve it", [pod("a", "10.0.0.1", port_name="other")], svc(), []),
    ("numeric targetPort and two ports share one subset", [pod("a", "10.0.0.1")],
     svc(ports=[{"name": "x", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "y", "port": 81, "targetPort": 8081, "protocol": "TCP"}]),
     [{"addresses": [addr("a", "10.0.0.1")], "ports": [{"name": "x", "port": 8080, "protocol": "TCP"},
                                                       {"name": "y", "port": 8081, "protocol": "TCP"}]}]),
    ("headless without ports: addresses alone", [pod("a", "10.0.0.1")], svc(ports=[], cluster_ip="None"),
     [{"addresses": [addr("a", "10.0.0.1")]}]),
])
def test_endpoints_for(name, pods, service, subsets):
    assert endpoints_for(service, pods)["subsets"] == subsets


def test_endpoints_labels_and_selectorless_services():
    out = endpoints_for(svc(labels={"tier": "front"}, cluster_ip="None"), [])
    assert out["metadata"] == {"name": "web", "namespace": "default",
                               "labels": {"tier": "front", "service.kubernetes.io/headless": "",
                                          "endpointslice.kubernetes.io/skip-mirror": "true"}}
    assert endpoints_for(svc(selector=None), [pod("a", "10.0.0.1")]) is None


def test_repack_merges_ports_of_the_same_addresses():
    a = addr("a", "10.0.0.1")
    assert repack([{"addresses": [a], "ports": [{"port": 1}]}, {"addresses": [a], "ports": [{"port": 2}]}]) == \
        [{"addresses": [a], "ports": [{"port": 1}, {"port": 2}]}]


@pytest.mark.parametrize("target,protocol,expected", [
    (8080, "TCP", 8080), ("http", "TCP", 8080), ("http", "UDP", None), ("nope", "TCP", None), (None, "TCP", 80)])
def test_find_port(target, protocol, expected):
    sp = {"port": 80, "protocol": protocol}
    if target is not None:
        sp["targetPort"] = target
    assert find_port(pod("a", "10.0.0.1"), sp) == expected


def test_should_be_in_endpoints_and_pod_changed():
    assert should_be_in_endpoints(pod("a", "1.1.1.1", deleting=True), include_terminating=True)
    assert not should_be_in_endpoints(pod("a", "1.1.1.1", deleting=True), include_terminating=False)
    assert not pod_changed(pod("a", "1.1.1.1"), {**pod("a", "1.1.1.1"), "metadata": {
        **pod("a", "1.1.1.1")["metadata"], "annotations": {"x": "y"}}})
    assert pod_changed(pod("a", "1.1.1.1"), pod("a", "1.1.1.1", ready=False))


# --- EndpointSlices ---

def slice_(name, endpoints, ports=(HTTP,), rv="5"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
                         "labels": {SERVICE_NAME: "web", MANAGED_BY: "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": list(endpoints), "ports": list(ports)}


def ep_of(p):
    return plan(svc(), [p], []).create[0]["endpoints"][0]


def test_slice_endpoints_carry_conditions_and_references():
    e = ep_of(pod("a", "10.0.0.1", ready=False))
    assert e == {"addresses": ["10.0.0.1"], "conditions": {"ready": False, "serving": False, "terminating": False},
                 "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "a",
                                                 "uid": "a-uid"}}
    e = ep_of(pod("a", "10.0.0.1", deleting=True))
    assert e["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_new_slices_hold_at_most_100_endpoints_with_labels_and_owner():
    pods = [pod(f"p{i:03}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(250)]
    p = plan(svc(labels={"tier": "front"}), pods, [])
    assert [len(s["endpoints"]) for s in p.create] == [100, 100, 50] and not p.update and not p.delete
    s = p.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"tier": "front", SERVICE_NAME: "web",
                                       MANAGED_BY: "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Service", "name": "web",
                                                   "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}] and s["addressType"] == "IPv4"


def test_one_pod_change_rewrites_one_slice():
    pods = [pod(f"p{i:03}", f"10.0.0.{i + 1}") for i in range(150)]
    first = plan(svc(), pods, [])
    existing = [{**s, "metadata": {**s["metadata"], "name": f"web-{i}", "resourceVersion": "5"}}
                for i, s in enumerate(first.create)]
    assert plan(svc(), pods, existing).empty
    changed = pods[:120] + [pod("p120", "10.0.0.121", ready=False)] + pods[121:]
    p = plan(svc(), changed, existing)
    assert [s["metadata"]["name"] for s in p.update] == ["web-1"] and not p.create and not p.delete
    # A new pod fills the room of an existing slice; a gone pod's slice shrinks.
    p = plan(svc(), pods[1:] + [pod("new", "10.0.1.1")], existing)
    assert not p.create and not p.delete and sorted(s["metadata"]["name"] for s in p.update) == ["web-0"]


def test_placeholder_and_port_changes():
    p = plan(svc(), [], [])
    assert len(p.create) == 1 and p.create[0]["endpoints"] == [] and p.create[0]["ports"] == []
    existing = [slice_("web-a", [ep_of(pod("a", "10.0.0.1"))]), slice_("web-b", [ep_of(pod("b", "10.0.0.2"))])]
    p = plan(svc(), [], existing)
    assert p.delete == ["web-b"] and p.update[0]["metadata"]["name"] == "web-a" and p.update[0]["endpoints"] == []
    # The pods now serve another port number: old slices go, new ones come.
    p = plan(svc(), [pod("a", "10.0.0.1", port=9090)], existing)
    assert sorted(p.delete) == ["web-a", "web-b"] and p.create[0]["ports"][0]["port"] == 9090
    assert plan(svc(selector=None), [pod("a", "10.0.0.1")], existing).empty


def test_slice_writes_wait_for_the_cache_to_see_them():
    w = SliceWrites()
    seen: dict[str, int] = {}
    assert not w.stale("default/web", seen.get)
    w.note("default/web", {"metadata": {"name": "web-a", "namespace": "default", "resourceVersion": "10"}})
    w.note("default/web", {"metadata": {"name": "web-b", "namespace": "default", "resourceVersion": "12"}})
    assert w.stale("default/web", seen.get)
    seen["default/web-a"] = 10
    assert w.stale("default/web", seen.get)
    seen["default/web-b"] = 15   # a later event (its deletion by someone else, say) counts too
    assert not w.stale("default/web", seen.get)
    assert not w.stale("default/web", {}.get)  # forgotten once seen


def test_endpoints_carry_their_node_zone():
    zones = {"n1": "zone-a"}.get
    [e] = plan(svc(), [pod("a", "10.0.0.1")], [], zones).create[0]["endpoints"]
    assert e["zone"] == "zone-a" and e["nodeName"] == "n1"
    [e] = plan(svc(), [pod("a", "10.0.0.1", node="n2")], [], zones).create[0]["endpoints"]
    assert "zone" not in e
