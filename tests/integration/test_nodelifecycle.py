"""The node lifecycle controller against a running API server and real NATS KV leases with short
durations: a lease that stops, a lease that comes back, evictions, and a zone partition."""
from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import time
import uuid

import nats

from eventplane.client import Client
from eventplane.client.nodeleases import NodeLeases
from reconcilers.controllers.nodelifecycle import NOT_READY_TAINT, UNREACHABLE_TAINT, build
from reconcilers.controllers.registry import CONTROLLERS, ControllerContext, builder
from reconcilers.informer import SharedInformerFactory

LEASE = 2.0       # seconds a lease lasts in these tests: ten renewals, so a busy machine's stalls don't expire it
RENEW = 0.2
MONITOR = 1.5     # nodes going dark together are counted together within this


def _node(name: str, zone: str) -> dict:
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone,
                                                  "kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status", "lastHeartbeatTime": t,
                                       "lastTransitionTime": t}]}}


def _pod(name: str, node: str, *tolerations: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "tolerations": list(tolerations),
                     "containers": [{"name": "c", "image": "nginx:1.27"}]}}


class Heartbeats:
    """Renews the leases of the nodes in `alive` every RENEW seconds, as node agents would."""

    def __init__(self, leases: NodeLeases, alive: set[str]) -> None:
        self.leases, self.alive = leases, alive

    async def run(self) -> None:
        while True:
            for name in list(self.alive):
                try:
                    await self.leases.renew(name, holder="test", duration=LEASE)
                except Exception as exc:   # a slow NATS on a busy machine: the next round renews it
                    print(f"renewing {name}: {exc!r}", file=sys.stderr)
            await asyncio.sleep(RENEW)


@contextlib.asynccontextmanager
async def cluster(api, servers, nodes: dict[str, str], **settings):
    """Nodes (name → zone) with live leases, and the controller running with short timings."""
    bucket = f"leases-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers.nats_url)
    client = Client.from_kubeconfig(str(api.kubeconfig))
    tasks: list[asyncio.Task] = []
    try:
        for name, zone in nodes.items():
            await client.create(_node(name, zone))
        leases = await NodeLeases.open(nc, bucket)
        beats = Heartbeats(leases, set(nodes))
        tasks.append(asyncio.create_task(beats.run()))
        await asyncio.sleep(RENEW)
        options = {"node-lifecycle": {"lease_bucket": bucket, "startup_grace": LEASE, "monitor_period": MONITOR,
                                      "eviction_rate": 10.0, **settings}}
        ctx = ControllerContext(client, SharedInformerFactory(client), nats_url=servers.nats_url, options=options)
        assert builder("node-lifecycle") is build and "node-lifecycle" in CONTROLLERS
        for controller in build(ctx):
            tasks.append(asyncio.create_task(controller.run()))
        tasks.append(asyncio.create_task(_watchdog(120.0)))
        yield client, beats
    finally:
        for t in tasks:
            t.cancel()
        await _bounded(asyncio.gather(*tasks, return_exceptions=True), "stopping the controller")
        for inf in list(ctx.informers) if "ctx" in locals() else []:
            await _bounded(inf.stop(), f"stopping {inf!r}")
        await _bounded(client.close(), "closing the client")
        with contextlib.suppress(Exception):   # not what is under test: never a reason to fail
            await asyncio.wait_for(nc.jetstream().delete_key_value(bucket), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 10)


def _tasks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task!r}\n")
        task.print_stack(limit=8, file=out)
    return out.getvalue()


async def _watchdog(after: float) -> None:
    """Should a test hang past pytest's timeout, its captured stderr says where every task was."""
    await asyncio.sleep(after)
    print(f"still running after {after:g} s; tasks:\n{_tasks()}", file=sys.stderr)


async def _bounded(aw, what: str, timeout: float = 20.0):
    """A step that must not hang the test: on timeout, fail with every task's stack, taken before the
    step is cancelled (so the tasks that hang are still in it)."""
    step = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({step}, timeout=timeout)
    if not done:
        dump = _tasks()
        step.cancel()
        await asyncio.gather(step, return_exceptions=True)
        raise AssertionError(f"{what} took over {timeout:g} s; tasks:\n{dump}")
    return step.result()


async def _until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await _bounded(predicate(), f"a probe for {what}")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _ready(node: dict) -> dict:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def _taints(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def _node_where(c: Client, name: str, check, what: str) -> dict:
    async def probe():
        node = await c.get("nodes", name)
        return node if check(node) else None
    return await _until(probe, what=f"node {name} {what}")


async def test_a_lease_that_stops_and_comes_back(api, servers):
    nodes = {"n1": "zone-a", "n2": "zone-a", "n3": "zone-b"}
    async with cluster(api, servers, nodes, default_toleration_seconds=1.0) as (c, beats):
        await c.create(_pod("plain", "n1"))
        await c.create(_pod("tolerant", "n1", {"key": UNREACHABLE_TAINT, "operator": "Exists",
                                               "effect": "NoExecute"}))
        await c.create(_pod("patient", "n1", {"key": UNREACHABLE_TAINT, "operator": "Exists",
                                              "effect": "NoExecute", "tolerationSeconds": 3600}))
        await c.create(_pod("elsewhere", "n2"))
        # The tolerant pod runs and is Ready, as its agent said before the node went dark.
        await c.patch("pods", "tolerant", {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-28T10:00:00Z"}]}},
            subresource="status")
        await asyncio.sleep(LEASE + 0.5)
        # Live leases: nothing happens to healthy nodes.
        for name in nodes:
            node = await c.get("nodes", name)
            assert _ready(node)["status"] == "True" and not _taints(node), name

        beats.alive.discard("n1")
        node = await _node_where(c, "n1", lambda n: _ready(n)["status"] == "Unknown", "Ready Unknown")
        ready = _ready(node)
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        node = await _node_where(c, "n1", lambda n: (UNREACHABLE_TAINT, "NoExecute") in _taints(n), "NoExecute")
        assert _taints(node) == {(UNREACHABLE_TAINT, "NoSchedule"), (UNREACHABLE_TAINT, "NoExecute")}
        events = (await c.history("nodes", "n1"))["items"]
        assert events[-1]["causation"] is not None          # the controller's writes say what caused them
        assert len((await c.why("nodes", "n1"))["steps"]) >= 2

        # The pod without a toleration goes after the default tolerationSeconds (1 s here), gracefully.
        async def evicted():
            pod = await c.get("pods", "plain")
            return pod if pod["metadata"].get("deletionTimestamp") else None
        pod = await _until(evicted, what="pod plain evicted")
        assert any(x["type"] == "DisruptionTarget" and x["reason"] == "DeletionByTaintManager"
                   for x in pod["status"]["conditions"])
        for name in ("tolerant", "patient", "elsewhere"):
            assert not (await c.get("pods", name))["metadata"].get("deletionTimestamp"), name
        # Pods of the dark node are not Ready any more (MarkPodsNotReady), and Events say what happened.
        tolerant = await c.get("pods", "tolerant")
        assert next(x for x in tolerant["status"]["conditions"] if x["type"] == "Ready")["status"] == "False"

        async def events():
            items = (await c.list("events", namespace="default"))["items"]
            got = {(e["involvedObject"]["name"], e["reason"], e["message"]) for e in items}
            want = {("n1", "NodeNotReady", "Node n1 status is now: NodeNotReady"),
                    ("plain", "TaintManagerEviction", "Marking for deletion Pod default/plain"),
                    ("tolerant", "NodeNotReady", "Node is not ready")}
            return want <= got
        await _until(events, what="the Events")
        for name in ("n2", "n3"):
            assert _ready(await c.get("nodes", name))["status"] == "True"

        # The lease renews: Ready again, and the taints go.
        beats.alive.add("n1")
        node = await _node_where(c, "n1", lambda n: _ready(n)["status"] == "True" and not _taints(n),
                                 "Ready again without taints")
        assert _ready(node)["reason"] == "KubeletReady"
        assert {x["type"]: x["status"] for x in node["status"]["conditions"]}["Ready"] == "True"


async def test_a_zone_partition_stops_evictions_but_a_zone_failure_does_not(api, servers):
    nodes = {"a0": "zone-a", "a1": "zone-a", "a2": "zone-a", "a3": "zone-a", "b0": "zone-b", "c0": "zone-c"}
    async with cluster(api, servers, nodes, default_toleration_seconds=0.0) as (c, beats):
        for name in nodes:
            await c.create(_pod(f"on-{name}", name))
        # Three of zone-a's four nodes go dark at once: 75 % of the zone, a partition.
        beats.alive -= {"a0", "a1", "a2"}
        for name in ("a0", "a1", "a2"):
            await _node_where(c, name, lambda n: _ready(n)["status"] == "Unknown"
                              and (UNREACHABLE_TAINT, "NoSchedule") in _taints(n), "Unknown and NoSchedule")
        await asyncio.sleep(MONITOR + 1.0)   # past the monitor period: a NoExecute taint would be there by now
        for name in ("a0", "a1", "a2"):
            assert (UNREACHABLE_TAINT, "NoExecute") not in _taints(await c.get("nodes", name)), name
            assert not (await c.get("pods", f"on-{name}"))["metadata"].get("deletionTimestamp"), name

        # zone-b's only node goes dark: the zone has failed (other zones are fine), so its pods move.
        beats.alive.discard("b0")
        await _node_where(c, "b0", lambda n: (UNREACHABLE_TAINT, "NoExecute") in _taints(n), "NoExecute")

        async def evicted():
            pod = await c.get("pods", "on-b0")
            return bool(pod["metadata"].get("deletionTimestamp"))
        await _until(evicted, what="pod on-b0 evicted")
        assert not (await c.get("pods", "on-a3"))["metadata"].get("deletionTimestamp")

        # When the partition heals the nodes come back, untainted — and the first ones back do not
        # make the zone look healthy enough to evict from the others on their way back.
        beats.alive |= {"a0", "a1", "a2"}
        for name in ("a0", "a1", "a2"):
            await _node_where(c, name, lambda n: _ready(n)["status"] == "True" and not _taints(n), "healthy")
        assert NOT_READY_TAINT not in {k for k, _ in _taints(await c.get("nodes", "a3"))}
        await asyncio.sleep(MONITOR + 0.5)
        for name in ("a0", "a1", "a2", "a3", "c0"):
            assert not (await c.get("pods", f"on-{name}"))["metadata"].get("deletionTimestamp"), name
