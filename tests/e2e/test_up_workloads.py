"""What a newcomer does: `eventplane up`, then `kubectl apply` of an ordinary Deployment runs its
pods on this machine's node agent (Docker containers where an engine answers — always under
CI=true — else host processes), `epctl history` tells who changed it, and `epctl why` walks a
pod's causal chain from the user's apply to its start. Scaling down stops what is no longer
wanted. Everything runs as child processes, as a user would run them."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nodeagent.runtime import NODE
from nodeagent.runtime.dockerapi import DockerApi
from tests.e2e.test_cli import clean_env, data_root, launch, wait_until_up  # noqa: F401  (fixtures)
from tests.support.docker import ensure_test_image, remove_node_containers

pytestmark = pytest.mark.slow

EPCTL = [sys.executable, "-m", "eventplane.cli.epctl"]

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {image}
        command: {command}
        readinessProbe:
          exec: {{command: ["true"]}}
          periodSeconds: 1
"""
SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""
# With Docker each pod serves its own name over HTTP (busybox httpd); host processes share one network,
# so there they only sleep.
HTTPD = '[sh, -c, "hostname > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]'
SLEEP = '[sleep, "3600"]'


def is_local(ip: str) -> bool:
    out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True, check=False).stdout
    return out.startswith("local ")


async def http_get(ip: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 5)
    writer.write(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()


async def run(*argv: str, env: dict[str, str], timeout: float = 120.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


async def ok(*argv: str, env: dict[str, str], timeout: float = 120.0) -> str:
    code, out, err = await run(*argv, env=env, timeout=timeout)
    assert code == 0, f"{' '.join(argv)} failed ({code}):\n{err}\n{out}"
    return out


async def docker_or_none() -> tuple[DockerApi | None, str]:
    api = DockerApi()
    if await api.ping():
        return api, await ensure_test_image(api)
    await api.close()
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true requires a Docker engine (.ci/run starts one)")
    return None, "busybox"    # the process runtime ignores the image and runs the command on the host


async def test_up_apply_a_deployment_runs_it_and_tells_who_and_why(tmp_path, launch, data_root):  # noqa: F811
    docker, image = await docker_or_none()
    node = f"test-{uuid.uuid4().hex[:8]}"
    data = data_root / "data"
    up = launch("up", "--data-dir", str(data), "--no-kubeconfig-merge", "--node-name", node,
                "--runtime", "docker" if docker else "process", *(["--proxy-services"] if docker else []))
    command = HTTPD if docker else SLEEP
    try:
        await wait_until_up(data, up)
        env = {**clean_env(), "KUBECONFIG": str(data / "kubeconfig"), "HOME": str(tmp_path / "home")}
        manifest = tmp_path / "web.yaml"
        manifest.write_text(DEPLOY.format(replicas=3, image=image, command=command))
        assert "deployment.apps/web created" in await ok("kubectl", "apply", "-f", str(manifest), env=env)
        await ok("kubectl", "rollout", "status", "deploy/web", "--timeout=120s", env=env, timeout=150)

        pods = json.loads(await ok("kubectl", "get", "pods", "-l", "app=web", "-o", "json", env=env))["items"]
        assert len(pods) == 3
        assert {p["spec"]["nodeName"] for p in pods} == {node}
        assert all(p["status"]["phase"] == "Running" for p in pods)
        if docker:
            running = [c for c in await docker.containers({NODE: node}) if c["State"] == "running"]
            assert len(running) >= 3, running    # a container per pod at least (plus infra containers)

        if docker:
            # The node agent proxies the Service's ClusterIP (on lo, so local) round-robin to the 3 pods.
            svc_file = tmp_path / "svc.yaml"
            svc_file.write_text(SERVICE)
            await ok("kubectl", "apply", "-f", str(svc_file), env=env)
            ip = json.loads(await ok("kubectl", "get", "svc", "web", "-o", "json", env=env))["spec"]["clusterIP"]
            names: list[str] = []
            for _ in range(100):
                if is_local(ip):
                    try:
                        names.append(await http_get(ip, 80))
                    except OSError:
                        pass        # endpoints not published yet: the proxy closes the connection
                    if len(set(names[-3:])) == 3:
                        break
                await asyncio.sleep(0.2)
            assert is_local(ip), f"{ip} never became local"
            assert set(names[-3:]) == {p["metadata"]["name"] for p in pods}, names

        history = await ok(*EPCTL, "history", "deploy/web", env=env)
        assert "admin" in history and "create" in history, history
        # The controllers act as themselves, not as the admin whose kubeconfig `up` wrote.
        assert "system:kube-controller-manager" in history, history

        pod = pods[0]["metadata"]["name"]
        why = await ok(*EPCTL, "why", f"pod/{pod}", env=env)
        # The chain from the user's apply: Deployment → ReplicaSet → Pod → bound → started, in that order.
        for step in ("deployments.apps/web", "replicasets.apps/web-", f"pods/{pod}", "admin", "system:kube-scheduler",
                     f"system:node:{node}"):
            assert step in why, why
        lines = why.splitlines()
        assert "admin" in lines[1] and "deployments.apps/web" in lines[1], why
        assert "system:kube-scheduler" in lines[4] and "Bound" in lines[4], why

        manifest.write_text(DEPLOY.format(replicas=1, image=image, command=command))
        await ok("kubectl", "apply", "-f", str(manifest), env=env)
        await ok("kubectl", "rollout", "status", "deploy/web", "--timeout=60s", env=env, timeout=90)
        for _ in range(150):
            left = json.loads(await ok("kubectl", "get", "pods", "-l", "app=web", "-o", "json", env=env))["items"]
            if len(left) == 1:
                break
            await asyncio.sleep(0.2)
        assert len(left) == 1, [p["metadata"]["name"] for p in left]
        assert await up.stop(signal.SIGTERM) == 0, up.output()
    finally:
        if up.proc.poll() is None:      # a failed test: stop the agent first, or it restarts what we remove
            await up.stop(signal.SIGTERM)
        if docker:
            await remove_node_containers(docker, node)
            await docker.close()
