"""The Docker engine for node agent tests: a fixture that answers or skips, a test image
built locally, and cleanup of exactly the containers a test made.

No registry is reachable here, so the test image is a `docker import` of a
busybox-static root filesystem (nodeagent.runtime.docker.busybox_rootfs): sh,
sleep, cat, httpd, nc … Tests skip with the reason when no engine answers,
except under CI=true, where a missing engine is a failure (.ci/run starts one).

Every agent a test runs gets a node name of its own (`test-<random>`), and all
its containers carry it as a label: cleanup removes the containers with that
label, never anyone else's.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from nodeagent.runtime import NODE
from nodeagent.runtime.docker import busybox_rootfs
from nodeagent.runtime.dockerapi import DockerApi

TEST_IMAGE = "eventplane-test/busybox:1"
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)


async def engine_or_skip() -> DockerApi:
    api = DockerApi()
    if await api.ping():
        return api
    await api.close()
    reason = f"no Docker engine answers at {api.socket} (install docker.io and start dockerd)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " — CI=true requires it")
    pytest.skip(reason)


async def ensure_test_image(api: DockerApi) -> str:
    if await api.image(TEST_IMAGE) is None:
        if BUSYBOX is None:
            message = "busybox-static is not installed: the test image cannot be built"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        repo, tag = TEST_IMAGE.rsplit(":", 1)
        await api.import_image(busybox_rootfs(BUSYBOX), repo, tag)
    return TEST_IMAGE


async def remove_node_containers(api: DockerApi, node: str) -> None:
    for c in await api.containers({NODE: node}):
        await api.remove(c["Id"])


def unmount_under(root: Path) -> None:
    """Unmount what an agent mounted under `root` (emptyDir volumes of medium Memory are tmpfs mounts)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def fresh_node(api: DockerApi, root: Path | None = None):
    """A fresh node name; on exit every container labelled with it is removed, and every mount the
    agent made under `root`."""
    node = f"test-{uuid.uuid4().hex[:8]}"
    try:
        yield node
    finally:
        await asyncio.shield(remove_node_containers(api, node))
        if root is not None:
            unmount_under(root)


def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "nodeagent"
    d.mkdir(parents=True, exist_ok=True)
    return d
