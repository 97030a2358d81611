"""The DaemonSet controller against a real API server, with kubectl: nodes are Node objects, and a fake
kubelet binds each daemon pod to the node its affinity names and makes it Running."""
from __future__ import annotations

import json

from reconcilers.controllers import daemonset
from tests.integration._fake_kubelet import FakeKubelet
from tests.integration.test_job_controllers import controllers, pod_events, wait_for
from tests.support.controllers import background

MANIFEST = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "agent"}},
             "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
             "template": {"metadata": {"labels": {"app": "agent"}},
                          "spec": {"nodeSelector": {"role": "worker"},
                                   "containers": [{"name": "agent", "image": "agent:1"}]}}}}


def node(name: str, role: str = "worker") -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"role": role}}}


def ready_by_node(initial, events) -> list[int]:
    """After each pod event (from the pods listed at the start): how many nodes had a Ready pod not being deleted."""
    state: dict[str, tuple[str, bool]] = {}
    out = []
    for t, p in [("ADDED", p) for p in initial] + events:
        ok = t != "DELETED" and not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
        state[p["metadata"]["uid"]] = ((p.get("spec") or {}).get("nodeName") or "", ok)
        out.append(len({n for n, good in state.values() if good and n}))
    return out


async def test_one_pod_per_eligible_node_following_nodes_and_rolling_update(api):
    async with controllers(api, daemonset.build) as c, FakeKubelet(c, "default", node=daemonset.pinned_to):
        for n in ("n1", "n2", "n3"):
            await c.create(node(n))
        await c.create(node("m1", role="control-plane"))
        await api.ok("apply", "-f", "-", input=json.dumps(MANIFEST))
        await api.ok("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=70)

        async def placed():
            pods = (await c.list("pods", namespace="default"))["items"]
            return sorted(p["spec"].get("nodeName") or "" for p in pods if not p["metadata"].get("deletionTimestamp"))
        assert await placed() == ["n1", "n2", "n3"]
        ds = await c.get("daemonsets", "agent", namespace="default")
        st = ds["status"]
        assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"],
                st["updatedNumberScheduled"], st["numberAvailable"], st["numberMisscheduled"]) == (3, 3, 3, 3, 3, 0)

        # A node joins, a node leaves, a node gets a NoExecute taint.
        await c.create(node("n4"))

        async def on_n4():
            return await placed() == ["n1", "n2", "n3", "n4"]
        await wait_for(on_n4)
        await api.ok("delete", "node", "n2")
        await api.ok("taint", "node", "n3", "dedicated=db:NoExecute")

        async def gone():
            return await placed() == ["n1", "n4"]
        await wait_for(gone)

        # Rolling update: never more than maxUnavailable=1 of the 2 nodes without a Ready pod.
        listed = await c.list("pods", namespace="default")
        before = listed["metadata"]["resourceVersion"]
        await api.ok("set", "image", "daemonset/agent", "agent=agent:2")
        await api.ok("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=70)
        pods = [p for p in (await c.list("pods", namespace="default"))["items"]]
        assert sorted(p["spec"]["containers"][0]["image"] for p in pods) == ["agent:2", "agent:2"]
        last = max(int(p["metadata"]["resourceVersion"]) for p in pods)
        events = await pod_events(c, "default", before, last)
        seeded = ready_by_node(listed["items"], events)
        assert seeded[len(listed["items"]) - 1] == 2   # both nodes Ready before the update
        counts = seeded[len(listed["items"]):]
        assert min(counts) == 1 and counts[-1] == 2   # one node down at a time, then both back
        revisions = (await c.list("controllerrevisions", namespace="default"))["items"]
        assert sorted(r["revision"] for r in revisions) == [1, 2]

        # kubectl rollout undo goes back through the ControllerRevisions.
        await api.ok("rollout", "undo", "daemonset/agent")
        await api.ok("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=70)

        async def back():
            pods = (await c.list("pods", namespace="default"))["items"]
            return sorted(p["spec"]["containers"][0]["image"] for p in pods) == ["agent:1", "agent:1"]
        await wait_for(back)


async def test_with_the_scheduler_and_simulated_nodes(api, servers):
    """No fake kubelet: the real scheduler binds each daemon pod by its matchFields affinity, and simulated
    nodes (leases in NATS KV) make the pods Running and Ready."""
    import uuid

    from nodeagent.simulated import SimulatedNodes, SimulatorConfig
    from reconcilers.scheduler.scheduler import run_scheduler

    async with controllers(api, daemonset.build) as c:
        config = SimulatorConfig(count=3, lease_bucket=f"leases-{uuid.uuid4().hex[:8]}", holder="test-ds")
        async with background(SimulatedNodes(c, servers.nats_url, config).run(),
                              run_scheduler(c, identity="test-ds", leader_elect=False)):
            manifest = json.loads(json.dumps(MANIFEST))
            del manifest["spec"]["template"]["spec"]["nodeSelector"]
            await api.ok("apply", "-f", "-", input=json.dumps(manifest))

            async def everywhere():
                nodes = [n["metadata"]["name"] for n in (await c.list("nodes"))["items"]]
                ds = await c.get("daemonsets", "agent", namespace="default")
                st = ds.get("status") or {}
                return len(nodes) == 3 and st.get("numberReady") == 3 and st.get("desiredNumberScheduled") == 3
            await wait_for(everywhere, timeout=60)
            pods = (await c.list("pods", namespace="default"))["items"]
            assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
                n["metadata"]["name"] for n in (await c.list("nodes"))["items"])
            for p in pods:
                assert daemonset.pinned_to({"spec": {k: v for k, v in p["spec"].items() if k != "nodeName"}}) == \
                    p["spec"]["nodeName"]
