"""The node agent's process runtime (no Docker): a pod's command runs as a host process,
its status is reported, a crashing one backs off, and deletion ends it."""
from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from eventplane.client import Client
from nodeagent import NodeAgent
from nodeagent.runtime.process import ProcessRuntime
from tests.integration.test_nodeagent import condition, cstatus, pod, wait_for

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def process_agent(api, servers, tmp_path, node="proc-node"):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    runtime = ProcessRuntime(node, tmp_path / "processes", host_ip="127.0.0.1")
    agent = NodeAgent(client, node_name=node, runtime=runtime, nats_url=servers.nats_url, data_dir=tmp_path / "agent",
                      node_ip="127.0.0.1")
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for r in await runtime.containers():   # only what this test started
            await runtime.remove(r.id)
        await client.close()


def proc(name: str, script: str, **extra):
    return {"name": name, "image": "ignored", "command": ["sh", "-c", script], **extra}


async def test_process_runtime_runs_reports_backs_off_and_deletes(api, servers, tmp_path):
    async with process_agent(api, servers, tmp_path) as agent:
        client = agent.client
        await client.create(pod("p1", "proc-node", proc(
            "app", 'echo "hello $WHO"; exec sleep 3600', env=[{"name": "WHO", "value": "processes"}],
            readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})), namespace="default")
        await client.create(pod("p2", "proc-node", proc("app", "exit 4")), namespace="default")
        p1 = await wait_for(client, "p1", lambda p: condition(p, "Ready") == "True")
        assert p1["status"]["podIP"] == "127.0.0.1" and p1["status"]["phase"] == "Running"
        [rec] = [r for r in await agent.runtime.containers(p1["metadata"]["uid"]) if r.role == "app"]
        for _ in range(50):
            if await agent.runtime.logs(rec.id):
                break
            await asyncio.sleep(0.1)
        assert (await agent.runtime.logs(rec.id)).decode().strip() == "hello processes"
        pid = agent.runtime._meta(rec.id)["pid"]

        p2 = await wait_for(client, "p2", lambda p: (cstatus(p, "app").get("state") or {}).get("waiting", {})
                            .get("reason") == "CrashLoopBackOff")
        assert cstatus(p2, "app")["lastState"]["terminated"]["exitCode"] == 4

        await client.delete("pods", "p1", namespace="default", grace_period_seconds=2)
        await wait_for(client, "p1", lambda p: not p)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_an_adopted_process_that_ends_is_reported(tmp_path):
    """A restarted agent's runtime adopts processes an earlier one started (not its children): the
    kernel tells it when one ends (a pidfd), and it reports the pod as changed."""
    import json
    import signal

    from nodeagent.runtime import APP, CONTAINER_NAME, NODE, POD_UID, ROLE, ContainerConfig

    labels = {NODE: "adopting", POD_UID: "uid-1", ROLE: APP, CONTAINER_NAME: "c"}
    first = ProcessRuntime("adopting", tmp_path / "state", host_ip="127.0.0.1")
    cid = await first.run_container(ContainerConfig(name="c", role=APP, image="", command=("sleep", "60"),
                                                    labels=labels), None)
    await first.close()                      # the agent goes; the process keeps running
    second = ProcessRuntime("adopting", tmp_path / "state", host_ip="127.0.0.1")
    [record] = await second.containers()
    assert record.id == cid and record.running
    changes = second.changes()
    change = asyncio.ensure_future(changes.__anext__())
    await asyncio.sleep(0.3)                 # the watcher has looked at what it adopts
    assert not change.done()
    pid = json.loads((tmp_path / "state" / cid / "meta.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    try:
        assert await asyncio.wait_for(change, 10) == "uid-1"
        [record] = await second.containers()
        assert not record.running
    finally:
        await changes.aclose()
