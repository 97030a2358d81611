"""Endpoints and EndpointSlices from pods whose readiness is written through pods/status, as a node
agent would, against a real API server and kubectl."""
from __future__ import annotations

import asyncio
import json

from eventplane.objects import errors
from tests.support.controllers import eventually, running

PODS = "/api/v1/namespaces/default/pods"


async def _eventually(check, timeout: float = 15):
    return await eventually(check, timeout, tolerate=(errors.NotFoundError,))


def _pod(name: str, port: int = 8080) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1",
                     "containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": port}]}]}}


async def _status(api, name: str, ip: str, ready: bool) -> None:
    _, pod, _ = await api.http("GET", f"{PODS}/{name}")
    pod["status"].update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]})
    status, body, _ = await api.http("PUT", f"{PODS}/{name}/status", body=pod)
    assert status == 200, body


def _ref(name: str) -> dict:
    return {"kind": "Pod", "namespace": "default", "name": name}


async def test_endpoints_and_slices_follow_pod_readiness(api):
    async with running(api, "endpoints", "endpointslice", "garbage-collector") as c:
        await c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"selector": {"app": "web"},
                                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        for name in ("a", "b"):
            await c.create(_pod(name))
        await _status(api, "a", "10.1.0.1", True)
        await _status(api, "b", "10.1.0.2", False)

        async def endpoints_ok():
            ep = await c.get("endpoints", "web", namespace="default")
            subsets = ep.get("subsets") or []
            if len(subsets) != 1:
                return None
            s = subsets[0]
            ok = [a["ip"] for a in s.get("addresses") or []] == ["10.1.0.1"] and \
                [a["ip"] for a in s.get("notReadyAddresses") or []] == ["10.1.0.2"]
            return s if ok else None
        s = await _eventually(endpoints_ok)
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        a = s["addresses"][0]
        assert a["nodeName"] == "node-1" and {k: a["targetRef"][k] for k in ("kind", "namespace", "name")} == _ref("a")

        async def slices_ok():
            out = json.loads(await api.ok("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                          "-o", "json"))["items"]
            if len(out) != 1 or len(out[0].get("endpoints") or []) != 2:
                return None
            ready = {e["targetRef"]["name"]: e["conditions"]["ready"] for e in out[0]["endpoints"]}
            return out[0] if ready == {"a": True, "b": False} else None
        sl = await _eventually(slices_ok)
        assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"

        # b becomes Ready: both are addresses; the write says which event caused it.
        await _status(api, "b", "10.1.0.2", True)

        async def both_ready():
            ep = await c.get("endpoints", "web", namespace="default")
            s = (ep.get("subsets") or [{}])[0]
            return ep if len(s.get("addresses") or []) == 2 and not s.get("notReadyAddresses") else None
        ep = await _eventually(both_ready)
        why = await c.why("endpoints", "web", namespace="default", resource_version=ep["metadata"]["resourceVersion"])
        steps = why["steps"]
        # The Endpoints update was caused by b's pods/status write.
        assert steps[-2]["resourceVersion"] == steps[-1]["causation"] and steps[-2]["type"] == "StatusUpdated"

        # A pod whose container lacks the named port serves nothing; deleting the service removes both.
        await c.create(_pod("c") | {"spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}})
        await _status(api, "c", "10.1.0.3", True)
        await asyncio.sleep(0.5)
        ep = await c.get("endpoints", "web", namespace="default")
        assert sorted(a["ip"] for a in ep["subsets"][0]["addresses"]) == ["10.1.0.1", "10.1.0.2"]
        await c.delete("services", "web", namespace="default")

        async def gone():
            try:
                await c.get("endpoints", "web", namespace="default")
                return False
            except errors.NotFoundError:
                pass
            left = (await c.list("endpointslices", namespace="default",
                                 label_selector="kubernetes.io/service-name=web"))["items"]
            return not left
        await _eventually(gone)


async def test_services_without_selector_are_left_alone(api):
    async with running(api, "endpoints", "endpointslice") as c:
        await c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
                        "spec": {"ports": [{"port": 5432}]}})
        mine = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
                "subsets": [{"addresses": [{"ip": "192.168.1.10"}], "ports": [{"port": 5432}]}]}
        created = await c.create(mine)
        # A selected service in the same namespace proves the controllers are running.
        await c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe"},
                        "spec": {"selector": {"app": "none"}, "ports": [{"port": 1}]}})

        async def probe_done():
            await c.get("endpoints", "probe", namespace="default")
            items = (await c.list("endpointslices", namespace="default",
                                  label_selector="kubernetes.io/service-name=probe"))["items"]
            return len(items) == 1 and not items[0].get("endpoints")  # the placeholder slice
        await _eventually(probe_done)
        ep = await c.get("endpoints", "manual", namespace="default")
        assert ep["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        assert ep["subsets"] == created["subsets"]
        slices = (await c.list("endpointslices", namespace="default",
                               label_selector="kubernetes.io/service-name=manual"))["items"]
        assert slices == []
