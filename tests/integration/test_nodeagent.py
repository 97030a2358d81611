"""The node agent against a real API server, NATS and Docker engine: pods bound to a test
node (spec.nodeName set directly) run as containers, and their status is reported."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest

from eventplane.client import Client
from eventplane.objects import errors
from nodeagent import NodeAgent
from nodeagent.runtime import POD_UID
from nodeagent.runtime.docker import DockerRuntime
from tests.support.docker import data_dir, engine_or_skip, ensure_test_image, fresh_node

pytestmark = pytest.mark.slow


@pytest.fixture
async def docker():
    api = await engine_or_skip()
    await ensure_test_image(api)
    yield api
    await api.close()


@contextlib.asynccontextmanager
async def agent_running(api, servers, node: str, tmp_path):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    agent = NodeAgent(client, node_name=node, runtime=DockerRuntime(node), nats_url=servers.nats_url,
                      data_dir=data_dir(tmp_path))
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


@pytest.fixture
async def node(docker, tmp_path):
    async with fresh_node(docker, tmp_path) as n:
        yield n


def pod(name: str, node: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": list(containers), **spec}}


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "eventplane-test/busybox:1", "command": ["sh", "-c", script], **extra}


async def wait_for(client: Client, name: str, check, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await client.get("pods", name, namespace="default")
        except errors.NotFoundError:
            last = {}
        if check(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name} never got there; last seen: {last.get('status')}")


def condition(p: dict[str, Any], type_: str) -> str | None:
    return next((c["status"] for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def cstatus(p: dict[str, Any], name: str) -> dict[str, Any]:
    return next((s for s in (p.get("status") or {}).get("containerStatuses") or [] if s["name"] == name), {})


async def test_pod_runs_with_env_and_volumes_and_turns_ready(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client = agent.client
        await client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                             "data": {"greeting": "hello from a configmap", "color": "blue"}}, namespace="default")
        await client.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                             "stringData": {"password": "s3cret!"}}, namespace="default")
        await client.create(pod("web", node, container(
            "main", "touch /tmp/ready; sleep 3600",
            env=[{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                 {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "WHERE", "value": "$(ME) on $(NODE)"},
                 {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
            volumeMounts=[{"name": "creds", "mountPath": "/etc/creds"}, {"name": "scratch", "mountPath": "/scratch"}],
            resources={"limits": {"memory": "64Mi", "cpu": "500m"}},
            readinessProbe={"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}),
            volumes=[{"name": "creds", "secret": {"secretName": "creds"}},
                     {"name": "scratch", "emptyDir": {"medium": "Memory"}}]), namespace="default")
        p = await wait_for(client, "web", lambda p: condition(p, "Ready") == "True")
        assert p["status"]["phase"] == "Running"
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert condition(p, t) == "True", t
        s = cstatus(p, "main")
        assert s["ready"] is True and s["started"] is True and s["restartCount"] == 0
        assert "running" in s["state"] and s["containerID"].startswith("docker://")
        assert p["status"]["podIP"] and p["status"]["hostIP"] == agent.node_ip and p["status"]["startTime"]

        cid = s["containerID"].removeprefix("docker://")
        _, out, _ = await docker.exec(cid, ["sh", "-c", 'echo "$GREETING|$ME|$WHERE|$CM_color"; cat /etc/creds/password'])
        assert out.decode().splitlines() == [f"hello from a configmap|web|web on $(NODE)|blue", "s3cret!"]
        inspected = await docker.inspect(cid)
        assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert inspected["HostConfig"]["CpuQuota"] == 50_000
        assert inspected["HostConfig"]["NetworkMode"].startswith("container:")
        assert inspected["Config"]["Labels"][POD_UID] == p["metadata"]["uid"]

        # Syncing again without any change writes nothing.
        for _ in range(3):
            for w in agent.workers.values():
                w.wake()
            await asyncio.sleep(0.3)
        assert (await client.get("pods", "web", namespace="default"))["metadata"]["resourceVersion"] == \
            p["metadata"]["resourceVersion"]

        # The agent's status write says which pod event it acted on, and that chain reaches the create.
        why = await client.why("pods", "web", namespace="default", resource_version=p["metadata"]["resourceVersion"])
        steps = why["steps"]
        assert steps[-1]["type"] == "StatusUpdated" and steps[-1]["causation"] is not None
        assert why["complete"] and steps[0]["verb"] == "create"


async def test_init_container_then_http_and_tcp_probes_drive_readiness(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client = agent.client
        www = [{"name": "www", "mountPath": "/www"}]
        await client.create(pod("site", node, container(
            "web", "exec httpd -f -p 8080 -h /www", volumeMounts=www, ports=[{"name": "http", "containerPort": 8080}],
            readinessProbe={"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1,
                            "failureThreshold": 1},
            livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1}),
            initContainers=[container("fill", "echo hello > /www/index.html", volumeMounts=www)],
            volumes=[{"name": "www", "emptyDir": {}}]), namespace="default")
        p = await wait_for(client, "site", lambda p: condition(p, "Ready") == "True")
        init = p["status"]["initContainerStatuses"][0]
        assert init["state"]["terminated"]["reason"] == "Completed" and init["ready"] is True
        assert condition(p, "Initialized") == "True"
        async with aiohttp.ClientSession() as s, s.get(f"http://{p['status']['podIP']}:8080/index.html") as r:
            assert (await r.text()).strip() == "hello"

        cid = cstatus(p, "web")["containerID"].removeprefix("docker://")
        await docker.exec(cid, ["rm", "/www/index.html"])
        p = await wait_for(client, "site", lambda p: condition(p, "Ready") == "False")
        assert condition(p, "ContainersReady") == "False"
        assert cstatus(p, "web")["restartCount"] == 0 and "running" in cstatus(p, "web")["state"]


async def test_failing_liveness_probe_restarts_the_container(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        await agent.client.create(pod("sick", node, container(
            "app", "sleep 3600",
            livenessProbe={"exec": {"command": ["test", "-f", "/tmp/never"]}, "periodSeconds": 1,
                           "failureThreshold": 1}),
            terminationGracePeriodSeconds=1), namespace="default")
        p = await wait_for(agent.client, "sick", lambda p: cstatus(p, "app").get("restartCount", 0) >= 1)
        s = cstatus(p, "app")
        assert s["lastState"]["terminated"]["exitCode"] == 137


async def test_container_exiting_nonzero_goes_crashloopbackoff(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        await agent.client.create(pod("crash", node, container("app", "echo dying; exit 3")), namespace="default")
        p = await wait_for(agent.client, "crash",
                           lambda p: (cstatus(p, "app").get("state") or {}).get("waiting", {}).get("reason")
                           == "CrashLoopBackOff")
        s = cstatus(p, "app")
        assert s["restartCount"] >= 1
        assert s["lastState"]["terminated"]["exitCode"] == 3
        assert s["lastState"]["terminated"]["reason"] == "Error"
        assert "back-off 10s restarting failed container=app pod=crash_default" in s["state"]["waiting"]["message"]
        assert p["status"]["phase"] == "Running"
        assert condition(p, "Ready") == "False"


async def test_memory_limit_kills_an_allocating_container_as_oomkilled(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        await agent.client.create(pod("hog", node, container(
            "app", 'x=a; while true; do x="$x$x"; done', resources={"limits": {"memory": "16Mi"}}),
            restartPolicy="Never"), namespace="default")
        p = await wait_for(agent.client, "hog", lambda p: p.get("status", {}).get("phase") == "Failed")
        t = cstatus(p, "app")["state"]["terminated"]
        assert t["reason"] == "OOMKilled" and t["exitCode"] == 137


async def test_delete_stops_containers_gracefully_then_removes_the_pod(api, servers, docker, node, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    async with agent_running(api, servers, node, tmp_path) as agent:
        await agent.client.create(pod("bye", node, container(
            "app", "trap 'echo term >> /marks/log; exit 0' TERM; while true; do sleep 0.2; done",
            volumeMounts=[{"name": "marks", "mountPath": "/marks"}],
            lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /marks/log"]}}}),
            terminationGracePeriodSeconds=20,
            volumes=[{"name": "marks", "hostPath": {"path": str(marks)}}]), namespace="default")
        p = await wait_for(agent.client, "bye", lambda p: condition(p, "Ready") == "True")
        uid = p["metadata"]["uid"]
        await agent.client.delete("pods", "bye", namespace="default")
        await wait_for(agent.client, "bye", lambda p: not p)
        assert (marks / "log").read_text().split() == ["prestop", "term"]
        assert await docker.containers({POD_UID: uid}) == []


async def test_agent_restart_adopts_containers_and_removes_orphans(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client = agent.client
        await client.create(pod("keep", node, container("app", "sleep 3600"), terminationGracePeriodSeconds=1),
                            namespace="default")
        await client.create(pod("gone", node, container("app", "sleep 3600"), terminationGracePeriodSeconds=1),
                            namespace="default")
        keep = await wait_for(client, "keep", lambda p: condition(p, "Ready") == "True")
        gone = await wait_for(client, "gone", lambda p: condition(p, "Ready") == "True")
        before = {c["Id"] for c in await docker.containers({POD_UID: keep["metadata"]["uid"]})}
        assert len(before) == 2    # the infra container and app

    # The agent is gone: its containers keep running. A pod is force-deleted meanwhile.
    for cid in before:
        assert (await docker.inspect(cid))["State"]["Running"]
    async with Client.from_kubeconfig(str(api.kubeconfig)) as client:
        await client.delete("pods", "gone", namespace="default", grace_period_seconds=0)

    async with agent_running(api, servers, node, tmp_path) as agent:
        await asyncio.wait_for(agent.adopted.wait(), 30)
        assert await docker.containers({POD_UID: gone["metadata"]["uid"]}) == []
        keep_again = await wait_for(agent.client, "keep", lambda p: condition(p, "Ready") == "True")
        after = {c["Id"] for c in await docker.containers({POD_UID: keep["metadata"]["uid"]})}
        assert after == before
        assert cstatus(keep_again, "app")["restartCount"] == 0


async def test_static_pods_are_mirrored_into_the_api_and_run(api, servers, docker, node, tmp_path):
    from nodeagent.staticpods import MIRROR, StaticPods

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "static.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static, namespace: default}\n"
        "spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n"
        "    image: eventplane-test/busybox:1\n    command: [sleep, '3600']\n")
    async with agent_running(api, servers, node, tmp_path) as agent:
        await asyncio.wait_for(agent.adopted.wait(), 30)
        static = StaticPods(agent, manifests)
        await static.sync()
        mirror = f"static-{node}"
        p = await wait_for(agent.client, mirror, lambda p: condition(p, "Ready") == "True")
        assert p["metadata"]["annotations"][MIRROR] and p["spec"]["nodeName"] == node
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Node"

        (manifests / "static.yaml").unlink()
        await static.sync()
        await wait_for(agent.client, mirror, lambda p: not p)


async def test_security_context_downward_and_projected_volumes_and_refusals(api, servers, docker, node, tmp_path):
    async with agent_running(api, servers, node, tmp_path) as agent:
        client = agent.client
        await client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"},
                             "data": {"a.txt": "alpha", "b.txt": "beta"}}, namespace="default")
        await client.create(pod("locked", node, container(
            "app", "sleep 3600",
            securityContext={"runAsUser": 65534, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            volumeMounts=[{"name": "info", "mountPath": "/info"}, {"name": "all", "mountPath": "/all"}]),
            volumes=[{"name": "info", "downwardAPI": {"items": [
                         {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                     {"name": "all", "projected": {"sources": [
                         {"configMap": {"name": "files", "items": [{"key": "a.txt", "path": "conf/a"}]}},
                         {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
            terminationGracePeriodSeconds=1), namespace="default")
        await client.create(pod("root", node, container("app", "sleep 3600",
                                                        securityContext={"privileged": True})), namespace="default")
        await client.create(pod("nowhere", node, {"name": "app", "image": "registry.invalid/none:1",
                                                  "command": ["true"]}), namespace="default")

        p = await wait_for(client, "locked", lambda p: condition(p, "Ready") == "True")
        cid = cstatus(p, "app")["containerID"].removeprefix("docker://")
        _, out, _ = await docker.exec(cid, ["sh", "-c", "id -u; cat /info/name; echo; cat /all/conf/a; echo; "
                                            "cat /all/ns; echo; touch /x 2>/dev/null && echo writable || echo ro"])
        assert out.decode().split() == ["65534", "locked", "alpha", "default", "ro"]

        root = await wait_for(client, "root", lambda p: cstatus(p, "app").get("state", {}).get("waiting"))
        waiting = cstatus(root, "app")["state"]["waiting"]
        assert waiting["reason"] == "CreateContainerConfigError" and "privileged" in waiting["message"]

        nowhere = await wait_for(client, "nowhere", lambda p: (cstatus(p, "app").get("state", {}).get("waiting") or {})
                                 .get("reason") in ("ErrImagePull", "ImagePullBackOff"))
        assert nowhere["status"]["phase"] == "Pending"
        await wait_for(client, "nowhere", lambda p: cstatus(p, "app")["state"]["waiting"]["reason"] == "ImagePullBackOff",
                       timeout=20)


async def test_changing_the_image_restarts_the_container(api, servers, docker, node, tmp_path):
    api_image = "eventplane-test/busybox:1"
    other = "eventplane-test/busybox:other"
    await docker.request("POST", f"/images/{api_image}/tag", params={"repo": "eventplane-test/busybox", "tag": "other"})
    async with agent_running(api, servers, node, tmp_path) as agent:
        await agent.client.create(pod("img", node, container("app", "sleep 3600"), terminationGracePeriodSeconds=1),
                                  namespace="default")
        p = await wait_for(agent.client, "img", lambda p: condition(p, "Ready") == "True")
        await agent.client.patch("pods", "img", {"spec": {"containers": [{"name": "app", "image": other}]}},
                                 type="strategic", namespace="default")
        p = await wait_for(agent.client, "img", lambda p: cstatus(p, "app").get("image") == other
                           and cstatus(p, "app").get("restartCount") == 1 and condition(p, "Ready") == "True")
        cid = cstatus(p, "app")["containerID"].removeprefix("docker://")
        assert (await docker.inspect(cid))["Config"]["Image"] == other
