"""`eventplane nodeagent` as its own process: it registers its Node and lease, runs a pod, is
killed with SIGKILL — the containers keep running — and, started again, adopts them without
recreating any; SIGTERM then stops it cleanly, containers still running."""
from __future__ import annotations

import asyncio
import signal
import sys
import time

import nats
import pytest

from eventplane.client import Client
from eventplane.client.nodeleases import NodeLeases
from nodeagent.runtime import POD_UID
from tests.integration.test_nodeagent import condition, container, docker, node, pod, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


async def start_agent(api, servers, node: str, state_dir) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "nodeagent", "--node-name", node, "--zone", "zone-a",
        "--kubeconfig", str(api.kubeconfig), "--nats-url", servers.nats_url, "--runtime", "docker",
        "--state-dir", str(state_dir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def until_line(proc: asyncio.subprocess.Process, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), max(0.1, deadline - time.monotonic()))
        seen.append(line.decode())
        if text in seen[-1]:
            return
        if not line:
            break
    raise AssertionError(f"the agent never logged {text!r}:\n{''.join(seen)}")


async def test_agent_process_killed_and_restarted_adopts_its_containers(api, servers, docker, node,  # noqa: F811
                                                                       tmp_path):
    proc = await start_agent(api, servers, node, tmp_path / "state")
    try:
        await until_line(proc, "pods bound here")
        async with Client.from_kubeconfig(str(api.kubeconfig)) as client:
            n = await client.get("nodes", node)
            assert n["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"
            assert n["metadata"]["labels"]["kubernetes.io/hostname"] == node
            assert {"cpu", "memory", "pods", "ephemeral-storage"} <= set(n["status"]["allocatable"])
            assert n["status"]["allocatable"]["pods"] == "110"
            assert [c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
            nc = await nats.connect(servers.nats_url)
            try:
                lease = await (await NodeLeases.open(nc)).get(node)
            finally:
                await nc.close()
            assert lease is not None and not lease.expired()

            await client.create(pod("survivor", node, container("app", "sleep 3600"),
                                    terminationGracePeriodSeconds=1), namespace="default")
            p = await wait_for(client, "survivor", lambda p: condition(p, "Ready") == "True")
            before = {c["Id"] for c in await docker.containers({POD_UID: p["metadata"]["uid"]})}

            proc.kill()
            await proc.wait()
            await asyncio.sleep(1)
            for cid in before:
                assert (await docker.inspect(cid))["State"]["Running"], "a container died with its agent"

            proc = await start_agent(api, servers, node, tmp_path / "state")
            await until_line(proc, "pods bound here")
            await asyncio.sleep(2)   # its first syncs
            after = {c["Id"] for c in await docker.containers({POD_UID: p["metadata"]["uid"]})}
            assert after == before
            p = await client.get("pods", "survivor", namespace="default")
            assert condition(p, "Ready") == "True"

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        for cid in before:
            assert (await docker.inspect(cid))["State"]["Running"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
