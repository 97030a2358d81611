"""The controller manager: choosing controllers, acting only while holding the Lease, stopping at
once when the lease is lost, handing over, and `eventplane controllers` as a process."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import pytest

from eventplane.client import Client
from reconcilers.controllers.registry import CONTROLLERS
from reconcilers.leaderelection import micro_time
from reconcilers.manager import LEASE_NAME, LEASE_NAMESPACE, ControllerManager, resolve_names

NS = "default"


def rs_manifest(name: str, replicas: int = 2) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"rs": name}},
                     "template": {"metadata": {"labels": {"rs": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


async def pod_count(client: Client, name: str) -> int:
    return len((await client.list("pods", namespace=NS, label_selector=f"rs={name}"))["items"])


async def until(predicate, timeout: float = 15.0) -> None:
    async def wait():
        while not await predicate():
            await asyncio.sleep(0.1)
    await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("names,expected", [
    ("replicaset", ["replicaset"]),
    ("deployment,replicaset", ["deployment", "replicaset"]),
    (["replicaset", "replicaset"], ["replicaset"]),
    ("all", sorted(CONTROLLERS)),
    ("all,-deployment", [n for n in sorted(CONTROLLERS) if n != "deployment"]),
])
def test_resolve_names(names, expected):
    assert resolve_names(names) == expected


def test_unknown_controller_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown controller 'nope'; known: .*replicaset"):
        resolve_names("replicaset,nope")


@contextlib.asynccontextmanager
async def running(api, identity: str, names: str = "replicaset"):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    m = ControllerManager(client, names=names, identity=identity, lease_duration=3.0, renew_deadline=2.0,
                          retry_period=0.5)
    task = asyncio.create_task(m.run())
    try:
        yield m, task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()


async def test_one_acts_and_a_release_hands_over_at_once(api):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    async with running(api, "one") as (one, one_task), running(api, "two") as (two, two_task):
        done, _ = await asyncio.wait([asyncio.ensure_future(one.wait_acting()),
                                      asyncio.ensure_future(two.wait_acting())],
                                     timeout=15, return_when=asyncio.FIRST_COMPLETED)
        assert done
        leader, follower = (one, two) if one.leading else (two, one)
        leader_task = one_task if leader is one else two_task
        assert not follower.leading and follower.controllers == [] and follower.terms == 0
        await client.create(rs_manifest("a"), namespace=NS)
        await until(lambda: _eq(pod_count(client, "a"), 2))

        loop = asyncio.get_running_loop()
        leader_task.cancel()                     # a clean stop releases the lease
        with contextlib.suppress(BaseException):
            await leader_task
        t = loop.time()
        await follower.wait_acting(10)
        assert loop.time() - t < 3.0             # sooner than the lease would have expired
        await client.patch("replicasets.apps", "a", {"spec": {"replicas": 4}}, namespace=NS)
        await until(lambda: _eq(pod_count(client, "a"), 4))
        lease = await client.get("leases.coordination.k8s.io", LEASE_NAME, namespace=LEASE_NAMESPACE)
        assert lease["spec"]["holderIdentity"] == follower.identity and lease["spec"]["leaseTransitions"] >= 1
    await client.close()


async def _eq(coro, n: int) -> bool:
    return await coro == n


async def test_a_manager_whose_lease_is_taken_stops_acting(api):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    async with running(api, "victim") as (m, _):
        await m.wait_acting(15)
        # Someone else takes the lease (as after a partition): the victim's renewals now conflict.
        lease = await client.get("leases.coordination.k8s.io", LEASE_NAME, namespace=LEASE_NAMESPACE)
        lease["spec"].update({"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
                              "renewTime": micro_time(), "acquireTime": micro_time()})
        await client.update(lease, namespace=LEASE_NAMESPACE)

        async def stopped() -> bool:
            return not m.leading and m.informers is None and m.controllers == []
        await until(stopped, timeout=5)           # within renew_deadline (2 s) and a retry
        # nothing acts any more: a new ReplicaSet gets no pods
        await client.create(rs_manifest("b"), namespace=NS)
        await asyncio.sleep(1.5)
        assert await pod_count(client, "b") == 0
    await client.close()


async def test_a_controller_that_cannot_be_built_does_not_stop_the_others(api, monkeypatch):
    monkeypatch.setitem(CONTROLLERS, "broken", "reconcilers.controllers.no_such_module:build")
    client = Client.from_kubeconfig(str(api.kubeconfig))
    async with running(api, "solo", names="broken,replicaset") as (m, _):
        await m.wait_acting(15)
        assert "broken" in m.failed and "ModuleNotFoundError" in m.failed["broken"]
        await client.create(rs_manifest("d"), namespace=NS)
        await until(lambda: _eq(pod_count(client, "d"), 2))
    await client.close()


async def test_eventplane_controllers_process(api):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPLANE_")}
    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "controllers", "--list", stdout=asyncio.subprocess.PIPE,
        env=env)
    out, _ = await listing.communicate()
    assert listing.returncode == 0 and "replicaset" in out.decode().split() and "deployment" in out.decode().split()

    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "controllers", "--controllers", "nope",
        "--kubeconfig", str(api.kubeconfig), stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await bad.communicate()
    assert bad.returncode == 1 and "unknown controller 'nope'" in err.decode()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "controllers", "--controllers", "replicaset",
        "--kubeconfig", str(api.kubeconfig), "--identity", "proc-1", "--lease-duration", "3",
        "--renew-deadline", "2", "--retry-period", "0.5", stderr=asyncio.subprocess.PIPE, env=env)
    client = Client.from_kubeconfig(str(api.kubeconfig))
    try:
        await client.create(rs_manifest("c", 3), namespace=NS)
        await until(lambda: _eq(pod_count(client, "c"), 3), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-2000:]
    lease = await client.get("leases.coordination.k8s.io", LEASE_NAME, namespace=LEASE_NAMESPACE)
    assert lease["spec"]["holderIdentity"] == ""      # released on the way out
    await client.close()
