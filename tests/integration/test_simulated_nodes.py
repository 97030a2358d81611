"""Simulated nodes against a running API server and the session's NATS: registration, leases,
pods turned Running/Ready, Jobs' pods ending, deletion, and a restart that adopts without writing."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid

import nats
import pytest

from eventplane.client import Client
from eventplane.client.kubeconfig import ClusterAccess
from eventplane.client.nodeleases import NodeLeases
from eventplane.objects import errors
from nodeagent.simulated import EXIT_CODE, RUN_SECONDS, SIMULATED_LABEL, SimulatedNodes, SimulatorConfig


def _client(api) -> Client:
    return Client.from_kubeconfig(str(api.kubeconfig))


def _config(**kw) -> SimulatorConfig:
    kw.setdefault("count", 3)
    return SimulatorConfig(lease_bucket=f"leases-{uuid.uuid4().hex[:8]}", lease_duration=4.0, renew_interval=0.5,
                           holder="test-sim", **kw)


@contextlib.asynccontextmanager
async def running(client: Client, nats_url: str, config: SimulatorConfig):
    sim = SimulatedNodes(client, nats_url, config)
    task = asyncio.create_task(sim.run())
    try:
        await asyncio.wait_for(asyncio.shield(_ready_or_failed(sim, task)), 30)
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _ready_or_failed(sim: SimulatedNodes, task: asyncio.Task) -> None:
    ready = asyncio.ensure_future(sim.wait_ready())
    await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()   # raises what stopped it


async def _until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _pod(name: str, *, restart: str = "Always", annotations: dict | None = None, containers: int = 1) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"restartPolicy": restart,
                     "containers": [{"name": f"c{i}", "image": "nginx:1.27"} for i in range(containers)]}}


async def _bind(c: Client, name: str, node: str) -> int:
    """Bind through pods/binding, as a scheduler does; the position of the Bound event."""
    await c.create_subresource("pods", name, "binding", {"apiVersion": "v1", "kind": "Binding",
                                                         "metadata": {"name": name},
                                                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    return int((await c.get("pods", name))["metadata"]["resourceVersion"])


async def _phase(c: Client, name: str, phase: str):
    async def check():
        pod = await c.get("pods", name)
        return pod if (pod.get("status") or {}).get("phase") == phase else None
    return await _until(check, what=f"pod {name} {phase}")


async def test_nodes_are_registered_and_their_leases_renewed(api, servers):
    config = _config(count=4, zones=3, cpu="8", memory="32Gi", pods_per_node=50)
    async with _client(api) as c, running(c, servers.nats_url, config) as sim:
        nodes = {n["metadata"]["name"]: n for n in (await c.list("nodes"))["items"]}
        assert set(nodes) == {"sim-0", "sim-1", "sim-2", "sim-3"} == set(sim.nodes)
        n1 = nodes["sim-1"]
        labels = n1["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == "sim-1" and labels["kubernetes.io/os"] == "linux"
        assert labels[SIMULATED_LABEL] == "true"
        assert [nodes[f"sim-{i}"]["metadata"]["labels"]["topology.kubernetes.io/zone"] for i in range(4)] == \
            ["zone-0", "zone-1", "zone-2", "zone-0"]
        assert "scale tests and benchmarks" in n1["metadata"]["annotations"]["node.eventplane.io/simulated-by"]
        status = n1["status"]
        assert status["capacity"] == status["allocatable"] == {"cpu": "8", "memory": "32Gi", "pods": "50",
                                                               "ephemeral-storage": "100Gi"}
        ready = next(x for x in status["conditions"] if x["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == ("True", "KubeletReady",
                                                                       "kubelet is posting ready status")
        assert {x["type"]: x["status"] for x in status["conditions"]} == {
            "Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
        assert status["addresses"] == [{"type": "InternalIP", "address": "172.16.0.2"},
                                       {"type": "Hostname", "address": "sim-1"}]
        assert status["nodeInfo"]["operatingSystem"] == "linux" and status["nodeInfo"]["kubeletVersion"]
        assert n1["spec"]["podCIDR"] == "10.128.1.0/24"

        nc = await nats.connect(servers.nats_url)
        try:
            leases = await NodeLeases.open(nc, config.lease_bucket)
            first = await leases.all()
            assert set(first) == set(nodes)
            assert all(lease.holder == "test-sim" and lease.duration == 4.0 for lease in first.values())
            assert not any(lease.expired() for lease in first.values())
            await asyncio.sleep(1.2)
            later = await leases.get("sim-2")
            assert later.renew_time > first["sim-2"].renew_time     # renewed, not written once
            await nc.jetstream().delete_key_value(config.lease_bucket)
        finally:
            await nc.close()


async def test_bound_pods_run_end_and_are_deleted(api, servers):
    async with _client(api) as c, running(c, servers.nats_url, _config(count=2)) as sim:
        # A pod bound through pods/binding turns Running and Ready, caused by its Bound event.
        await c.create(_pod("web", containers=2))
        await _bind(c, "web", "sim-1")
        pod = await _phase(c, "web", "Running")
        status = pod["status"]
        assert {x["type"]: x["status"] for x in status["conditions"]} == {
            "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
            "PodScheduled": "True"}
        assert status["hostIP"] == "172.16.0.2" and status["podIP"].startswith("10.128.1.")
        assert status["podIPs"] == [{"ip": status["podIP"]}] and status["startTime"]
        assert [cs["name"] for cs in status["containerStatuses"]] == ["c0", "c1"]
        for cs in status["containerStatuses"]:
            assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
            assert cs["containerID"].startswith("sim://") and cs["imageID"] and "running" in cs["state"]
        history = (await c.history("pods", "web"))["items"]
        # _bind's read may already see the simulator's status write: the Bound event is in the history.
        bound_at = next(int(e["resourceVersion"]) for e in history if e["type"] == "Bound")
        running_event = next(e for e in history if int(e["resourceVersion"]) > bound_at)
        assert running_event["causation"] == str(bound_at)

        # The status is written once: looking again changes nothing.
        await sim.wait_idle()
        assert sim.stats.by_pod["default/web"] == 1
        assert (await c.get("pods", "web"))["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]

        # Pods with an end: a Never pod succeeds after its run; one told to fail fails with its code.
        await c.create(_pod("job", restart="Never", annotations={RUN_SECONDS: "0.5"}))
        await c.create(_pod("bad", restart="Never", annotations={RUN_SECONDS: "0.5", EXIT_CODE: "3"}))
        await _bind(c, "job", "sim-0")
        await _bind(c, "bad", "sim-0")
        done = await _phase(c, "job", "Succeeded")
        term = done["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        ready = next(x for x in done["status"]["conditions"] if x["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
        failed = await _phase(c, "bad", "Failed")
        term = failed["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (3, "Error")

        # Deleting a pod: the node stops it and deletes it for good (by UID), without waiting its grace period.
        with pytest.raises(errors.ConflictError, match="Precondition failed"):
            await c.delete("pods", "web", preconditions={"uid": "not-its-uid"}, grace_period_seconds=0)
        deleting = await c.delete("pods", "web")
        assert deleting["metadata"].get("deletionTimestamp")      # held by its grace period of 30 s

        async def gone():
            try:
                await c.get("pods", "web")
            except errors.NotFoundError:
                return True
            return False
        await _until(gone, timeout=10, what="pod web deleted")
        assert sim.stats.deletions >= 1
        # A pod bound to a node of nobody's is left alone.
        await c.create(_pod("elsewhere"))
        await _bind(c, "elsewhere", "not-simulated")
        await sim.wait_idle()
        assert (await c.get("pods", "elsewhere"))["status"]["phase"] == "Pending"


async def test_restart_adopts_nodes_and_pods_without_writing(api, servers):
    config = _config(count=2)
    async with _client(api) as c:
        async with running(c, servers.nats_url, config) as sim:
            for i in range(4):
                await c.create(_pod(f"p{i}"))
                await _bind(c, f"p{i}", f"sim-{i % 2}")
            for i in range(4):
                await _phase(c, f"p{i}", "Running")
            await sim.wait_idle()
        before = {p["metadata"]["name"]: p for p in (await c.list("pods"))["items"]}
        nodes_before = {n["metadata"]["name"]: n["metadata"]["resourceVersion"]
                        for n in (await c.list("nodes"))["items"]}

        async with running(c, servers.nats_url, config) as again:
            await again.wait_idle()
            # Meanwhile a new pod: it gets an address no adopted pod holds.
            await c.create(_pod("new"))
            await _bind(c, "new", "sim-0")
            fresh = await _phase(c, "new", "Running")
            await again.wait_idle()
        assert again.stats.nodes_created == again.stats.nodes_updated == again.stats.deletions == 0
        assert again.stats.by_pod == {"default/new": 1}
        after = {p["metadata"]["name"]: p for p in (await c.list("pods"))["items"]}
        for name, pod in before.items():
            assert after[name]["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"], name
        assert {n["metadata"]["name"]: n["metadata"]["resourceVersion"]
                for n in (await c.list("nodes"))["items"]} == nodes_before
        on_node0 = [p["status"]["podIP"] for p in before.values() if p["spec"]["nodeName"] == "sim-0"]
        assert fresh["status"]["podIP"] not in on_node0


@pytest.mark.parametrize("kw, message", [
    ({"count": 1, "zones": 0}, "zones must be at least 1"),
    ({"count": 1, "lease_duration": 5, "renew_interval": 10}, "must exceed the renew interval"),
    ({"count": 40000}, "do not fit the pod network"),
])
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**kw)


async def test_no_nats_is_refused():
    rest = Client.from_access(ClusterAccess(server="https://127.0.0.1:1"))
    with pytest.raises(ValueError, match="need NATS for their leases"):
        SimulatedNodes(rest, None, SimulatorConfig(count=1))


@pytest.mark.parametrize("via", ["rest", "nats"])
async def test_the_command_runs_until_sigterm(api, servers, tmp_path, via):
    """`eventplane simulate-nodes` as a process: nodes and leases appear, SIGTERM stops it with 0; with
    `--via nats` its writes (nodes, their status) arrive over the NATS API."""
    env = {**os.environ, "EVENTPLANE_DATA_DIR": str(tmp_path / "none")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "simulate-nodes", "--count", "2", "--zones", "2",
        "--name-prefix", "cli-", "--cpu", "4", "--kubeconfig", str(api.kubeconfig), "--nats-url", servers.nats_url,
        "--via", via, "--nats-api-prefix", api.server.config.nats_api_prefix,
        "--lease-duration", "4", "--renew-interval", "1", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        async with _client(api) as c:
            async def registered():
                items = (await c.list("nodes", label_selector=f"{SIMULATED_LABEL}=true"))["items"]
                return sorted(n["metadata"]["name"] for n in items) == ["cli-0", "cli-1"]
            await _until(registered, timeout=60, what="the command's nodes")
            node = await c.get("nodes", "cli-1")
            assert node["status"]["capacity"]["cpu"] == "4"
            assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-1"
        nc = await nats.connect(servers.nats_url)
        try:
            leases = await NodeLeases.open(nc)      # the default bucket: the command has no flag for it
            assert {"cli-0", "cli-1"} <= set(await leases.all())
        finally:
            await nc.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "scale tests and benchmarks" in err.decode()
    if via == "nats":
        audited = await api.server.auditor.query({"user": "admin", "transport": "nats", "resource": "nodes"})
        assert len([r for r in audited["items"] if r["verb"] == "create"]) >= 2  # the two Nodes
    nc = await nats.connect(servers.nats_url)
    try:
        leases = await NodeLeases.open(nc)
        for name in ("cli-0", "cli-1"):          # leave the session's bucket as we found it
            await leases.delete(name)
    finally:
        await nc.close()


async def test_via_nats_needs_a_token(api, servers, tmp_path):
    kubeconfig = tmp_path / "cert-only"
    from eventplane.auth.certs import issue_client_cert
    from eventplane.auth.kubeconfig import write_kubeconfig

    cert, key = issue_client_cert(api.server.pki, "someone", ())
    write_kubeconfig(kubeconfig, server_url=api.server.url, ca_pem=api.server.pki.ca_pem, user_name="someone",
                     client_cert_pem=cert, client_key_pem=key)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "simulate-nodes", "--count", "1", "--kubeconfig",
        str(kubeconfig), "--nats-url", servers.nats_url, "--via", "nats", stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and "needs a bearer token in the kubeconfig" in err.decode()
