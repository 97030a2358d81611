"""The node agent against a real API server, NATS and Docker engine: what a pod sees at its start
(Service environment variables, the pod's IP in its env while its sandbox starts beside its
container's creation, one status write saying Running and Ready), at a restart (env read again,
or, without the API, the last start's), and at its end (the final status, with the containers'
exit codes, written before the pod is deleted)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client
from nodeagent import NodeAgent
from nodeagent.runtime import POD_UID, RESTART_COUNT, ROLE
from nodeagent.runtime.docker import DockerRuntime
from nodeagent.runtime.dockerapi import DockerNotFound
from tests.integration.test_nodeagent import (agent_running, condition, container, cstatus, docker,  # noqa: F401
                                              node, pod, wait_for)
from tests.integration.test_nodeagent_resilience import Relay
from tests.support.docker import data_dir

pytestmark = pytest.mark.slow


async def app_env(docker, uid: str) -> dict[str, str]:
    """The environment the app container's process printed (`env`, first thing it does)."""
    for _ in range(100):
        [app] = [c for c in await docker.containers({POD_UID: uid}) if c["Labels"].get(ROLE) == "app"] or [None]
        if app is not None:
            out, _ = await docker.logs(app["Id"])
            text = out.decode()
            if "END" in text:
                return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        await asyncio.sleep(0.1)
    raise AssertionError("the container never printed its environment")


async def test_service_variables_and_enable_service_links(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client: Client = agent.client
        ns = f"links-{node[-8:]}"
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        svc = await client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis-primary"},
                                   "spec": {"selector": {"app": "redis"}, "ports": [
                                       {"name": "redis", "port": 6379, "targetPort": 6379},
                                       {"name": "metrics", "port": 9121, "protocol": "TCP"}]}}, namespace=ns)
        await client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless"},
                             "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]}},
                            namespace=ns)
        kube = await client.get("services", "kubernetes", namespace="default")
        ip, kube_ip = svc["spec"]["clusterIP"], kube["spec"]["clusterIP"]
        kube_port = kube["spec"]["ports"][0]["port"]
        script = "env; echo END; exec sleep 3600"
        env = [{"name": "URL", "value": "redis://$(REDIS_PRIMARY_SERVICE_HOST):$(REDIS_PRIMARY_SERVICE_PORT)"},
               {"name": "REDIS_PRIMARY_SERVICE_PORT_METRICS", "value": "mine"},
               {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        on = pod("links-on", node, container("app", script, env=env))
        off = pod("links-off", node, container("app", script), enableServiceLinks=False)
        for p in (on, off):
            p["metadata"]["namespace"] = ns
            await client.create(p, namespace=ns)

        async def running(name: str) -> dict[str, Any]:
            for _ in range(300):
                p = await client.get("pods", name, namespace=ns)
                if (p.get("status") or {}).get("phase") == "Running":
                    return p
                await asyncio.sleep(0.1)
            raise AssertionError(f"{name} never ran: {p.get('status')}")

        p_on, p_off = await running("links-on"), await running("links-off")
        e = await app_env(docker, p_on["metadata"]["uid"])
        assert e["REDIS_PRIMARY_SERVICE_HOST"] == ip
        assert e["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
        assert e["REDIS_PRIMARY_SERVICE_PORT_REDIS"] == "6379"
        assert e["REDIS_PRIMARY_SERVICE_PORT_METRICS"] == "mine"           # the container's own env wins
        assert e["REDIS_PRIMARY_PORT"] == f"tcp://{ip}:6379"
        assert e["REDIS_PRIMARY_PORT_6379_TCP"] == f"tcp://{ip}:6379"
        assert e["REDIS_PRIMARY_PORT_6379_TCP_PROTO"] == "tcp"
        assert e["REDIS_PRIMARY_PORT_6379_TCP_PORT"] == "6379"
        assert e["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == ip
        assert e["REDIS_PRIMARY_PORT_9121_TCP"] == f"tcp://{ip}:9121"
        assert e["URL"] == f"redis://{ip}:6379"                           # $(VAR) sees the Service variables
        assert not any(k.startswith("HEADLESS_") for k in e)                # no ClusterIP, no variables
        assert e["KUBERNETES_SERVICE_HOST"] == kube_ip and e["KUBERNETES_SERVICE_PORT"] == str(kube_port)
        assert e["KUBERNETES_PORT"] == f"tcp://{kube_ip}:{kube_port}"
        # The app was created while the sandbox started: its pod IP still came from the running sandbox.
        assert e["POD_IP"] == p_on["status"]["podIP"] != ""

        e = await app_env(docker, p_off["metadata"]["uid"])
        assert not any(k.startswith("REDIS_PRIMARY") for k in e)
        assert e["KUBERNETES_SERVICE_HOST"] == kube_ip                      # always, links or not
        assert e["KUBERNETES_PORT_443_TCP_ADDR" if kube_port == 443 else f"KUBERNETES_PORT_{kube_port}_TCP_ADDR"] \
            == kube_ip


async def test_first_running_status_is_ready_without_a_readiness_probe(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client: Client = agent.client
        rv = (await client.list("pods", namespace="default", limit=1))["metadata"]["resourceVersion"]
        seen: list[dict[str, Any]] = []
        async with client.watch("pods", namespace="default", resource_version=rv) as w:
            await client.create(pod("quick", node, container("app", "exec sleep 3600")), namespace="default")
            async with asyncio.timeout(30):
                async for _type, p in w:
                    if p["metadata"]["name"] != "quick":
                        continue
                    seen.append(p)
                    if (p.get("status") or {}).get("phase") == "Running":
                        break
        running = seen[-1]
        assert condition(running, "Ready") == "True" and condition(running, "ContainersReady") == "True"
        assert cstatus(running, "app")["ready"] is True and cstatus(running, "app")["started"] is True
        # create, then one status write: no Pending status in between (the sandbox and the app in one sync)
        assert [(p.get("status") or {}).get("phase") for p in seen] in (["Pending", "Running"], [None, "Running"])


async def test_final_status_is_written_before_the_pod_is_deleted(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client: Client = agent.client
        await client.create(pod("ending", node,
                                container("good", "trap 'exit 0' TERM; while true; do sleep 0.1; done"),
                                container("bad", "trap 'exit 3' TERM; while true; do sleep 0.1; done"),
                                terminationGracePeriodSeconds=10), namespace="default")
        p = await wait_for(client, "ending", lambda p: condition(p, "Ready") == "True")
        uid = p["metadata"]["uid"]
        events: list[tuple[str, dict[str, Any]]] = []
        async with client.watch("pods", namespace="default", resource_version=p["metadata"]["resourceVersion"]) as w:
            await client.delete("pods", "ending", namespace="default")
            async with asyncio.timeout(30):
                async for type_, obj in w:
                    if obj["metadata"]["name"] != "ending":
                        continue
                    events.append((type_, obj))
                    if type_ == "DELETED":
                        break
        assert events[-1][0] == "DELETED" and events[-1][1]["metadata"]["uid"] == uid
        final = events[-2][1]
        assert events[-2][0] == "MODIFIED" and final["metadata"].get("deletionTimestamp")
        status = final["status"]
        assert status["phase"] == "Failed"   # one container ended non-zero: terminal, whatever restartPolicy says
        good, bad = cstatus(final, "good")["state"]["terminated"], cstatus(final, "bad")["state"]["terminated"]
        assert (good["exitCode"], good["reason"]) == (0, "Completed")
        assert (bad["exitCode"], bad["reason"]) == (3, "Error")
        assert good["finishedAt"] and good["containerID"].startswith("docker://")
        assert condition(final, "Ready") == "False" and condition(final, "ContainersReady") == "False"
        assert await docker.containers({POD_UID: uid}) == []

        # Every container ending with 0: Succeeded.
        await client.create(pod("ending-ok", node, container("good", "trap 'exit 0' TERM; while true; do sleep 0.1; done"),
                                terminationGracePeriodSeconds=10), namespace="default")
        p = await wait_for(client, "ending-ok", lambda p: condition(p, "Ready") == "True")
        async with client.watch("pods", namespace="default", resource_version=p["metadata"]["resourceVersion"]) as w:
            await client.delete("pods", "ending-ok", namespace="default")
            last = None
            async with asyncio.timeout(30):
                async for type_, obj in w:
                    if obj["metadata"]["name"] != "ending-ok":
                        continue
                    if type_ == "DELETED":
                        break
                    last = obj
        assert last is not None and last["status"]["phase"] == "Succeeded"
        assert condition(last, "Ready") == "False"


async def printed(docker, uid: str, restart: str) -> str:
    """What the app container's instance `restart` printed, once it printed a line. A container listed
    may be gone by the time its logs are asked for (the agent replaced an attempt that could not start):
    the next listing finds the one that runs."""
    for _ in range(300):
        found = await docker.containers({POD_UID: uid, RESTART_COUNT: restart, ROLE: "app"})
        if found:
            try:
                out, _ = await docker.logs(found[0]["Id"])
            except DockerNotFound:
                out = b""
            if out.strip():
                return out.decode().strip()
        await asyncio.sleep(0.1)
    raise AssertionError(f"instance {restart} of the pod's app never printed")


async def test_env_is_resolved_at_each_start_and_kept_for_a_start_without_the_api(api, servers, docker, node,
                                                                                  tmp_path):
    relay = Relay(api.server.config.port)
    await relay.open()
    kubeconfig = tmp_path / "via-relay"
    write_kubeconfig(kubeconfig, server_url=f"https://127.0.0.1:{relay.port}", ca_pem=api.server.pki.ca_pem,
                     user_name="agent", token=api.server.admin_token)
    client = Client.from_kubeconfig(str(kubeconfig), timeout=2)   # a cut API is given up on soon
    agent = NodeAgent(client, node_name=node, runtime=DockerRuntime(node), nats_url=servers.nats_url,
                      data_dir=data_dir(tmp_path))
    task = asyncio.create_task(agent.run())
    direct = Client.from_kubeconfig(str(api.kubeconfig))
    try:
        await direct.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                             "data": {"v": "one"}}, namespace="default")
        env = [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "v"}}}]
        for name in ("fresh", "cached"):
            await direct.create(pod(name, node, container("app", 'echo "V=$V"; exec sleep 3600', env=env),
                                    terminationGracePeriodSeconds=1), namespace="default")
        uids = {}
        for name in ("fresh", "cached"):
            p = await wait_for(direct, name, lambda p: condition(p, "Ready") == "True")
            uids[name] = p["metadata"]["uid"]
            assert await printed(docker, uids[name], "0") == "V=one"
        await direct.patch("configmaps", "settings", {"data": {"v": "two"}}, namespace="default")

        # A restart reads the ConfigMap again, as the kubelet does.
        [app] = await docker.containers({POD_UID: uids["fresh"], ROLE: "app"})
        await docker.kill(app["Id"])
        assert await printed(docker, uids["fresh"], "1") == "V=two"

        # Without the API, a restart takes the values of the last start.
        await relay.cut()
        [app] = await docker.containers({POD_UID: uids["cached"], ROLE: "app"})
        await docker.kill(app["Id"])
        assert await printed(docker, uids["cached"], "1") == "V=one"
        await relay.open()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await direct.close()
        if relay.server is not None and relay.server.is_serving():
            await relay.cut()
