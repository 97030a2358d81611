"""The process runtime's volumes (no Docker): a container's volumeMounts are symlinks under its
`$EVENTPLANE_ROOT`, to the pod's prepared volumes — a ConfigMap's keys, a downward-API file, an
emptyDir shared by two containers, a subPath — and a workingDir under a mountPath is the volume."""
from __future__ import annotations

import asyncio
import os

import pytest

from tests.integration.test_nodeagent import condition, pod, wait_for
from tests.integration.test_nodeagent_process import proc, process_agent

pytestmark = pytest.mark.slow


async def test_process_containers_see_their_volumes_under_their_root(api, servers, tmp_path):
    async with process_agent(api, servers, tmp_path, node="proc-vol-node") as agent:
        client = agent.client
        await client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"},
                             "data": {"hello": "bonjour", "other": "x"}}, namespace="default")
        mounts = [{"name": "config", "mountPath": "/etc/config", "readOnly": True},
                  {"name": "info", "mountPath": "/etc/podinfo"},
                  {"name": "shared", "mountPath": "/data"},
                  {"name": "shared", "mountPath": "/logs", "subPath": "logs"}]
        writer = proc("writer",
                      'cat "$EVENTPLANE_ROOT/etc/config/hello" > from-config; '   # cwd: /data, the emptyDir
                      'cat "$EVENTPLANE_ROOT/etc/podinfo/name" > from-downward; '
                      'echo line > "$EVENTPLANE_ROOT/logs/app.log"; pwd -P > where; exec sleep 3600',
                      workingDir="/data", volumeMounts=mounts)
        reader = proc("reader", 'until [ -f "$EVENTPLANE_ROOT/shared/from-config" ]; do sleep 0.1; done; '
                                'exec sleep 3600', volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
                      readinessProbe={"exec": {"command": ["sh", "-c", 'test -f "$EVENTPLANE_ROOT/shared/where"']},
                                      "periodSeconds": 1})
        await client.create(pod("vols", "proc-vol-node", writer, reader, volumes=[
            {"name": "config", "configMap": {"name": "greeting", "items": [{"key": "hello", "path": "hello"}]}},
            {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "shared", "emptyDir": {}}]), namespace="default")
        p = await wait_for(client, "vols", lambda p: condition(p, "Ready") == "True", timeout=30)
        uid = p["metadata"]["uid"]
        shared = tmp_path / "agent" / "proc-vol-node" / "pods" / uid / "volumes" / "shared"
        for _ in range(50):
            if (shared / "where").exists():
                break
            await asyncio.sleep(0.1)
        assert (shared / "from-config").read_text().strip() == "bonjour"
        assert (shared / "from-downward").read_text().strip() == "vols"
        assert (shared / "logs" / "app.log").read_text() == "line\n"       # the subPath, made when missing
        assert (shared / "where").read_text().strip() == str(shared.resolve())
        [w] = [r for r in await agent.runtime.containers(uid) if r.name == "writer"]
        root = agent.runtime.dir / w.id / "root"
        assert os.readlink(root / "etc" / "config").endswith("/volumes/config")
        assert sorted(os.listdir(root / "etc" / "config")) == ["hello"]    # items: only the key named
        assert not os.path.exists("/etc/podinfo")                          # nothing is made on the host's paths
        await client.delete("pods", "vols", namespace="default")
        await wait_for(client, "vols", lambda p: not p, timeout=30)
