"""The node agent seen through the real kubectl: pods run as Docker containers, `kubectl get`
shows them Ready with their restarts, and `kubectl logs` and `kubectl exec` reach the container
through the API server and NATS (the API server never talks to Docker)."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.test_nodeagent import agent_running, docker, node  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

PODS = """\
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: eventplane-test/busybox:1
    command: [sh, -c, "echo one; echo two >&2; echo three; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: eventplane-test/busybox:1
    command: [sh, -c, "echo crashed; exit 1"]
"""
ECHO = """\
apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: app
    image: eventplane-test/busybox:1
    stdin: true
    command: [sh, -c, "read line; echo got $line"]
"""
COUNTER = """\
apiVersion: v1
kind: Pod
metadata: {{name: counter}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: app
    image: eventplane-test/busybox:1
    command: [sh, -c, "echo a; sleep 3; echo b"]
"""


async def until(api, *args, check, timeout=40.0) -> str:
    deadline, out = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        r = await api.kubectl(*args)
        out = r.out + r.err
        if r.code == 0 and check(r.out):
            return r.out
        await asyncio.sleep(0.3)
    raise AssertionError(f"kubectl {' '.join(args)} never satisfied the check; last output:\n{out}")


async def test_kubectl_get_and_logs(api, servers, docker, node, tmp_path):  # noqa: F811
    async with agent_running(api, servers, node, tmp_path):
        await api.ok("apply", "-f", "-", input=PODS.format(node=node))
        out = await until(api, "get", "pod", "talker", "--no-headers", check=lambda o: "1/1" in o and "Running" in o)
        assert out.split()[1:4] == ["1/1", "Running", "0"]
        logs = await until(api, "logs", "talker", check=lambda o: "three" in o)
        # stdout and stderr are two pipes: their relative order is the engine's to decide
        assert sorted(logs.split()) == ["one", "three", "two"]
        assert len((await api.ok("logs", "talker", "--tail=1")).split()) == 1
        stamped = (await api.ok("logs", "talker", "-c", "app", "--timestamps")).splitlines()
        assert len(stamped) == 3 and all(line.split()[0].startswith("20") for line in stamped)

        await until(api, "get", "pod", "crasher", "--no-headers", check=lambda o: "CrashLoopBackOff" in o)
        assert (await api.ok("logs", "crasher", "--previous")).split() == ["crashed"]

        # -f follows the container until it ends.
        await api.ok("apply", "-f", "-", input=COUNTER.format(node=node))
        await until(api, "get", "pod", "counter", "--no-headers", check=lambda o: "Running" in o)
        assert (await api.ok("logs", "-f", "counter", timeout=30)).split() == ["a", "b"]

        # exec over WebSockets (v5.channel.k8s.io), relayed through the API and NATS.
        assert (await api.ok("exec", "talker", "--", "cat", "/etc/hostname")).strip() == "talker"
        assert (await api.ok("exec", "-i", "talker", "--", "sh", "-c", "cat; echo err >&2",
                             input="from stdin\n")) == "from stdin\n"
        r = await api.kubectl("exec", "talker", "--", "sh", "-c", "exit 3")
        assert r.code == 3 and "command terminated with exit code 3" in r.err

        # attach: the container's own stdin and stdout (its spec keeps stdin open).
        await api.ok("apply", "-f", "-", input=ECHO.format(node=node))
        await until(api, "get", "pod", "echo", "--no-headers", check=lambda o: "Running" in o)
        out = await api.ok("attach", "-i", "echo", input="ping\n", timeout=30)
        assert "got ping" in out

        r = await api.kubectl("logs", "talker", "-c", "nope")
        assert r.code != 0 and "container nope is not valid for pod talker" in r.err
        r = await api.kubectl("logs", "missing")
        assert r.code != 0 and 'pods "missing" not found' in r.err
