"""The node agent's userspace service proxy against a real API server, NATS and Docker engine: a
Service's ClusterIP:80 reaches the ready pods only, round-robin, follows readiness changes without a
restart, and is taken down (listener and address on lo) when the Service goes.

The proxy adds the cluster's ClusterIPs to `lo` (label lo:eventplane); the test sends to one only once
`ip route get` says it is local, and in a finally removes those the proxy left (labelled, and not on
lo before the test) — and only those."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
from typing import Any

import pytest

from eventplane.client import Client
from nodeagent import run_nodeagent
from nodeagent.runtime.docker import DockerRuntime
from nodeagent.serviceproxy import LABEL, ready_endpoints
from reconcilers.controllers.registry import ControllerContext, builder
from reconcilers.informer import SharedInformerFactory
from tests.integration.test_nodeagent import docker, node  # noqa: F401 (fixtures)
from tests.support.controllers import eventually as poll
from tests.support.docker import TEST_IMAGE, data_dir

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def controllers(client: Client, *names: str):
    factory = SharedInformerFactory(client)
    ctx = ControllerContext(client=client, informers=factory)
    tasks = [asyncio.create_task(c.run()) for n in names for c in builder(n)(ctx)]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await factory.stop()


def lo_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


def proxy_addresses() -> set[str]:
    """The addresses on lo labelled by the proxy (the `kubernetes` Service's ClusterIP among them)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo", "label", LABEL], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


def is_local(ip: str) -> bool:
    out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True, check=False).stdout
    return out.startswith("local ")


def web_pod(name: str, node: str, ready: bool) -> dict[str, Any]:
    script = ("mkdir -p /www && echo \"$POD\" > /www/index.html && seq 1 200000 > /www/big && "
              + ("touch /tmp/ready && " if ready else "")
              + "exec httpd -f -p 8080 -h /www")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "hello"}},
            "spec": {"nodeName": node, "containers": [{
                "name": "web", "image": TEST_IMAGE, "command": ["sh", "-c", script],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}}]}}


async def get(ip: str, path: str = "/") -> str:
    assert is_local(ip), f"{ip} is not local: nothing is sent to it"
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, 80), 5)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: hello\r\n\r\n".encode())
        await writer.drain()
        response = (await asyncio.wait_for(reader.read(), 5)).decode()
    finally:
        writer.close()
    head, _, body = response.partition("\r\n\r\n")
    assert head.split("\r\n")[0].split()[1] == "200", response
    return body.strip()


eventually = functools.partial(poll, timeout=20.0)


def test_ready_endpoints_of_a_port_across_slices():
    def slice_(ports, *endpoints, family="IPv4"):
        return {"addressType": family, "ports": ports,
                "endpoints": [{"addresses": [a], "conditions": {"ready": r}} for a, r in endpoints]}
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    slices = [slice_(http, ("172.17.0.9", True), ("172.17.0.3", False), ("172.17.0.4", True)),
              slice_(http, ("172.17.0.2", True), ("172.17.0.4", True)),
              slice_([{"name": "http", "port": 9090}], ("172.17.0.7", True)),      # other ports: their own number
              slice_(http, ("fd00::1", True), family="IPv6"),
              slice_(http, ("172.17.0.8", None))]                                  # ready unknown: not ready
    assert ready_endpoints(slices, "http") == [("172.17.0.2", 8080), ("172.17.0.4", 8080), ("172.17.0.7", 9090),
                                               ("172.17.0.9", 8080)]
    assert ready_endpoints(slices, "dns") == []          # no TCP port of that name
    assert ready_endpoints(slices, "dns", "UDP") == [("172.17.0.2", 53), ("172.17.0.4", 53), ("172.17.0.9", 53)]
    assert ready_endpoints(slices, "") == []


async def test_cluster_ip_reaches_ready_pods_round_robin(api, servers, docker, node, tmp_path):
    before = lo_addresses()
    ip = None
    ips: list[str] = []          # ClusterIPs of the test's Services
    async with Client.from_kubeconfig(str(api.kubeconfig)) as client, \
            controllers(client, "endpoints", "endpointslice"):
        agent = asyncio.create_task(run_nodeagent(client, servers.nats_url, node_name=node,
                                                  runtime=DockerRuntime(node), data_dir=data_dir(tmp_path),
                                                  proxy_services=True))
        try:
            svc = await client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
                                       "spec": {"selector": {"app": "hello"},
                                                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
                                      namespace="default")
            ip = svc["spec"]["clusterIP"]
            ips.append(ip)
            assert ip.startswith("10.")
            # Another Service, kept until the agent stops: stopping the proxy removes its address.
            other = await client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"},
                                         "spec": {"selector": {"app": "other"}, "ports": [{"port": 81}]}},
                                        namespace="default")
            ips.append(other["spec"]["clusterIP"])
            for name, ready in (("a", True), ("b", True), ("c", False)):
                await client.create(web_pod(name, node, ready), namespace="default")

            async def slice_state():
                slices = (await client.list("endpointslices", namespace="default",
                                            label_selector="kubernetes.io/service-name=hello"))["items"]
                eps = [e for s in slices for e in s.get("endpoints") or []]
                last[:] = [{e["targetRef"]["name"]: e["conditions"]["ready"] for e in eps}]
                return last[0] == {"a": True, "b": True, "c": False}
            last: list[dict[str, bool]] = [{}]
            await eventually(slice_state, what=lambda: f"a and b ready, c not ready in the slice (last: {last[0]})")

            await eventually(lambda: asyncio.sleep(0, is_local(ip)), what=f"{ip} local")
            assert f"{ip}" in lo_addresses() and ip not in before

            # The proxy's informer may be a moment behind the slice: go on until both ready pods answered.
            seen: list[str] = []

            async def both_seen():
                seen.append(await get(ip))
                return {"a", "b"} <= set(seen)
            await eventually(both_seen, what="a and b answering")
            assert "c" not in seen

            answers = [await get(ip) for _ in range(9)]
            assert set(answers) == {"a", "b"}, answers
            assert all(x != y for x, y in zip(answers, answers[1:])), f"not round-robin: {answers}"

            # A body of 1.3 MB comes through whole.
            assert await get(ip, "/big") == "\n".join(str(i) for i in range(1, 200001))

            # sessionAffinity ClientIP: this client (one address) stays on one endpoint; None: round-robin again.
            await client.patch("services", "hello", {"spec": {"sessionAffinity": "ClientIP"}}, namespace="default")
            runs: list[str] = []

            async def sticky():
                runs.append(await get(ip))
                return len(runs) >= 3 and len(set(runs[-3:])) == 1
            await eventually(sticky, what="the same endpoint three times in a row")
            answers = [await get(ip) for _ in range(6)]
            assert answers == [runs[-1]] * 6, answers
            await client.patch("services", "hello", {"spec": {"sessionAffinity": "None"}}, namespace="default")

            async def rotating():
                x, y = await get(ip), await get(ip)
                return x != y
            await eventually(rotating, what="round-robin again")

            # c turns ready: the next connections reach it too, the proxy not restarted.
            c = await client.get("pods", "c", namespace="default")
            cid = c["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
            await docker.exec(cid, ["touch", "/tmp/ready"])

            async def c_answers():
                return await get(ip) == "c"
            await eventually(c_answers, what="c answering once ready")
            answers = [await get(ip) for _ in range(6)]
            assert sorted(answers) == ["a", "a", "b", "b", "c", "c"], answers
            assert all(x != y for x, y in zip(answers, answers[1:])), f"not round-robin: {answers}"

            # A pod on the Docker bridge reaches the ClusterIP too: the host (its gateway) owns the address.
            a = await client.get("pods", "a", namespace="default")
            aid = a["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
            assert is_local(ip)
            code, out, err = await docker.exec(aid, ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip} 80"],
                                               timeout=10)
            assert code == 0 and out.decode().split("\r\n\r\n", 1)[-1].strip() in {"a", "b", "c"}, (code, out, err)

            # The Service goes: its listener and its address on lo go with it.
            await client.delete("services", "hello", namespace="default")
            await eventually(lambda: asyncio.sleep(0, ip not in lo_addresses()), what=f"{ip} removed from lo")
            assert not is_local(ip)
            assert ips[1] in lo_addresses()
        finally:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
            # The proxy added the ClusterIPs of the cluster's Services (`kubernetes` too), labelled: what it
            # left of them, and only that, goes.
            left = sorted(proxy_addresses() - before)
            for a in left:
                subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)
    assert not left, f"the proxy left {left} on lo"
