"""Acceptance with the whole chain: kubectl applies a Deployment of 3 replicas; the controllers make
the pods, the scheduler binds them to the agent's node, and the agent runs 3 containers that
report Ready; `kubectl delete pod` stops one gracefully and the ReplicaSet replaces it."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from eventplane.client import Client
from nodeagent.runtime import NODE, ROLE
from reconcilers.manager import run_controllers
from reconcilers.scheduler.scheduler import run_scheduler
from tests.e2e.test_nodeagent_kubectl import until
from tests.integration.test_nodeagent import agent_running, docker, node  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: eventplane-test/busybox:1
        command: [httpd, -f, -p, "8080", -h, /]
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"""


@contextlib.asynccontextmanager
async def control_plane(api):
    client = Client.from_kubeconfig(str(api.kubeconfig))
    tasks = [asyncio.create_task(run_controllers(client, names="deployment,replicaset")),
             asyncio.create_task(run_scheduler(client, identity="test-scheduler", leader_elect=False))]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


async def test_deployment_of_three_runs_three_ready_containers(api, servers, docker, node, tmp_path):  # noqa: F811
    async with agent_running(api, servers, node, tmp_path), control_plane(api):
        await api.ok("apply", "-f", "-", input=DEPLOYMENT.format())
        out = await until(api, "get", "deployment", "web", "--no-headers", check=lambda o: o.split()[1] == "3/3",
                          timeout=90)
        assert out.split()[1] == "3/3"
        running = [c for c in await docker.containers({NODE: node, ROLE: "app"}) if c["State"] == "running"]
        assert len(running) == 3

        pods = (await api.ok("get", "pods", "-l", "app=web", "-o", "name")).split()
        await api.ok("delete", pods[0], "--wait=true", timeout=60)
        out = await until(api, "get", "deployment", "web", "--no-headers", check=lambda o: o.split()[1] == "3/3",
                          timeout=90)
        after = (await api.ok("get", "pods", "-l", "app=web", "-o", "name")).split()
        assert pods[0] not in after and len(after) == 3
