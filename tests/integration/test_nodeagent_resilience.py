"""DESIGN invariant 9 with a real engine: when the API server cannot be reached, no container is
stopped; the agent keeps restarting what crashes meanwhile, and the pod's status catches up once
the API is back.

The agent reaches the API through a TCP relay of the test's own: "the API goes away" closes the
relay's listener and cuts every connection through it (as the death of the API process does),
and "the API comes back" listens again on the same port.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client
from nodeagent import NodeAgent
from nodeagent.runtime import POD_UID, RESTART_COUNT, ROLE
from nodeagent.runtime.docker import DockerRuntime
from tests.integration.test_nodeagent import condition, container, cstatus, docker, node, pod, wait_for  # noqa: F401
from tests.support.apiserver import free_port
from tests.support.docker import data_dir

pytestmark = pytest.mark.slow


class Relay:
    """127.0.0.1:port → the API server's port, until cut."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        self.server.close()
        for w in list(self.links):
            w.transport.abort()
        self.links.clear()
        await self.server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}


async def test_agent_without_apiserver(api, servers, docker, node, tmp_path):  # noqa: F811
    relay = Relay(api.server.config.port)
    await relay.open()
    kubeconfig = tmp_path / "via-relay"
    write_kubeconfig(kubeconfig, server_url=f"https://127.0.0.1:{relay.port}", ca_pem=api.server.pki.ca_pem,
                     user_name="agent", token=api.server.admin_token)
    client = Client.from_kubeconfig(str(kubeconfig))
    agent = NodeAgent(client, node_name=node, runtime=DockerRuntime(node), nats_url=servers.nats_url,
                      data_dir=data_dir(tmp_path))
    task = asyncio.create_task(agent.run())
    try:
        await client.create(pod("steady", node, container("app", "sleep 3600"), terminationGracePeriodSeconds=1),
                            namespace="default")
        p = await wait_for(client, "steady", lambda p: condition(p, "Ready") == "True")
        uid = p["metadata"]["uid"]
        app_id = cstatus(p, "app")["containerID"].removeprefix("docker://")
        [infra] = [c["Id"] for c in await docker.containers({POD_UID: uid, ROLE: "infra"})]

        await relay.cut()
        # No API: the running containers are left alone, and a crash is still restarted here.
        await asyncio.sleep(1.5)
        assert (await docker.inspect(app_id))["State"]["Running"]
        await docker.kill(app_id)
        deadline = time.monotonic() + 30
        restarted = []
        while time.monotonic() < deadline and not restarted:
            restarted = [c for c in await docker.containers({POD_UID: uid, RESTART_COUNT: "1"})
                         if c["State"] == "running"]
            await asyncio.sleep(0.2)
        assert restarted, "the agent did not restart the container while the API was away"
        assert (await docker.inspect(infra))["State"]["Running"]
        await relay.open()

        # The API is back: the status converges on what happened meanwhile.
        async with Client.from_kubeconfig(str(api.kubeconfig)) as direct:
            p = await wait_for(direct, "steady", lambda p: cstatus(p, "app").get("restartCount") == 1
                               and condition(p, "Ready") == "True", timeout=40)
        assert cstatus(p, "app")["lastState"]["terminated"]["exitCode"] == 137
        assert [c["Id"] for c in await docker.containers({POD_UID: uid, ROLE: "infra"})] == [infra]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        if relay.server is not None and relay.server.is_serving():
            await relay.cut()
