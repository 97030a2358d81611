"""The Docker runtime: a pod is an infra container holding the network (and IPC)
namespace, and its containers join it (`NetworkMode: container:<infra>`), as
dockershim did.

Fed by the pod worker with ContainerConfigs; speaks to the engine through
dockerapi.py. Every container carries labels (runtime/__init__.py) naming its
node, pod, container and restart count, so that `containers()` finds a pod's
containers again after the agent restarts — the agent adopts them instead of
starting new ones (DESIGN invariant 9). The infra container runs busybox
`sleep` from an image the runtime builds itself (`docker import` of the host's
static busybox) when it is missing, since no registry may be reachable.
"""
from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import shutil
import tarfile
import time
from collections.abc import AsyncIterator
from typing import Any

from ..dns import dns_host_config
from . import (APP, CONTAINER_NAME, GRACE, INFRA, MANAGED, NODE, POD_NAME, POD_NAMESPACE, POD_UID, RESTART_COUNT,
               ROLE, SPEC_HASH, ContainerConfig, ContainerRecord, ContainerStartError, ImagePullError)
from .dockerapi import DockerApi, DockerError, DockerUnavailable

log = logging.getLogger("eventplane.nodeagent.docker")

PAUSE_IMAGE = "eventplane/pause:busybox"
PAUSE_COMMAND = ["/bin/busybox", "sleep", "2147483647"]
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
CPU_PERIOD = 100_000   # microseconds, as the kubelet sets it
MIN_SHARES = 2
STOP_SLACK = 15.0            # seconds beyond the grace period we wait for the engine's answer to a stop
IMAGE_CACHE_SECONDS = 30.0   # how long "the image is there" is believed without asking the engine again


class DockerRuntime:
    name = "docker"

    def __init__(self, node: str, *, api: DockerApi | None = None, pause_image: str = PAUSE_IMAGE,
                 allow_privileged: bool = False) -> None:
        self.node = node
        self.api = api or DockerApi()
        self.pause_image = pause_image
        self.allow_privileged = allow_privileged
        self.cluster_dns: list[str] = []     # the pods' nameservers under dnsPolicy ClusterFirst (dns.py), when served
        self._pause_ready = asyncio.Lock()
        self._pause_checked = False
        self._version = ""
        self._records: dict[str, tuple[str, ContainerRecord]] = {}   # id → (engine state, record)
        self._ending: set[str] = set()     # containers that died or were stopped: not trusted while "running"
        self._images: dict[str, tuple[str, float]] = {}   # image → (id, when it was last seen present)

    async def close(self) -> None:
        await self.api.close()

    async def version(self) -> str:
        if not self._version:
            v = await self.api.version()
            self._version = f"docker://{v.get('Version', 'unknown')}"
        return self._version

    # --- observing -------------------------------------------------------------------------------

    async def containers(self, pod_uid: str | None = None) -> list[ContainerRecord]:
        labels = {MANAGED: "true", NODE: self.node}
        if pod_uid:
            labels[POD_UID] = pod_uid
        summaries = await self.api.containers(labels)
        records = await asyncio.gather(*(self._inspect(s) for s in summaries))
        return [r for r in records if r is not None]

    async def _inspect(self, summary: dict[str, Any]) -> ContainerRecord | None:
        """What inspect says of a container changes only with its state (running → exited; a restart is a
        new container): a record is kept for as long as the listing shows the same state, so a sync
        costs one listing rather than an inspect per container. The listing lags behind the engine's
        `die` event and a stop's answer, so both forget the record (changes(), stop())."""
        cid, state = summary["Id"], summary.get("State", "")
        known = self._records.get(cid)
        if known is not None and known[0] == state and (state == "exited" or cid not in self._ending):
            return known[1]
        found = await self.api.inspect(cid)
        if found is None:
            self._records.pop(cid, None)
            return None
        record = record_of(found)
        if len(self._records) > 20_000:
            self._records.clear()
        self._records[cid] = (found.get("State") or {}).get("Status", ""), record
        return record

    def _ended(self, cid: str) -> None:
        """A container died or was stopped: until the listing shows it exited, inspect it."""
        self._records.pop(cid, None)
        if len(self._ending) > 20_000:
            self._ending.clear()
        self._ending.add(cid)

    async def changes(self) -> AsyncIterator[str]:
        """Pod uids whose containers died or were OOM-killed, for as long as the engine answers;
        the agent reopens the stream when it breaks (and resyncs every pod meanwhile)."""
        # Only ends: every start is the agent's own doing, and a sync already follows it.
        filters = {"type": ["container"], "event": ["die", "oom"], "label": [f"{NODE}={self.node}"]}
        async for event in self.api.events(filters):
            # The engine says `die` before its listing shows the container exited: what inspect said of
            # it is forgotten, so that the sync this event causes inspects it again.
            self._ended(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
            uid = ((event.get("Actor") or {}).get("Attributes") or {}).get(POD_UID)
            if uid:
                yield uid

    # --- images ----------------------------------------------------------------------------------

    async def ensure_image(self, image: str, policy: str) -> str:
        seen = self._images.get(image)
        if seen is not None and policy != "Always" and time.monotonic() - seen[1] < IMAGE_CACHE_SECONDS:
            return seen[0]
        present = await self.api.image(image)
        if present is not None:
            self._images[image] = (present.get("Id", ""), time.monotonic())
        if policy == "Never":
            if present is None:
                raise ImagePullError("ErrImageNeverPull",
                                     f'Container image "{image}" is not present with pull policy of Never')
            return present.get("Id", "")
        if present is not None and policy != "Always":
            return present.get("Id", "")
        try:
            await self.api.pull(image)
        except DockerError as exc:
            raise ImagePullError("ErrImagePull", f'failed to pull and unpack image "{image}": {exc}') from None
        found = await self.api.image(image)
        return (found or {}).get("Id", "")

    async def _ensure_pause(self) -> None:
        async with self._pause_ready:
            if self._pause_checked:
                return
            if await self.api.image(self.pause_image) is None:
                busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None) or shutil.which("busybox")
                if busybox is None:
                    raise ContainerStartError("CreatePodSandboxError",
                                              f"the infra image {self.pause_image} is missing and there is no "
                                              "static busybox to build it from (install busybox-static)")
                repo, tag = self.pause_image.rsplit(":", 1)
                log.info("building the infra image %s from %s", self.pause_image, busybox)
                await self.api.import_image(busybox_rootfs(busybox), repo, tag)
            self._pause_checked = True

    # --- running ---------------------------------------------------------------------------------

    async def run_sandbox(self, pod: dict[str, Any], labels: dict[str, str]) -> ContainerRecord:
        return await self.start_sandbox(await self.create_sandbox(pod, labels))

    async def create_sandbox(self, pod: dict[str, Any], labels: dict[str, str]) -> str:
        """The infra container, created (not started): containers may be created to join it meanwhile."""
        await self._ensure_pause()
        meta, spec = pod["metadata"], pod.get("spec") or {}
        attempt = int(labels.get(RESTART_COUNT, "0"))
        name = f"k8s_POD_{meta['name']}_{meta.get('namespace', '')}_{meta['uid']}_{attempt}"
        host_config: dict[str, Any] = {"IpcMode": "shareable", "RestartPolicy": {"Name": "no"},
                                       "NetworkMode": "host" if spec.get("hostNetwork") else "bridge",
                                       **dns_host_config(pod, self.cluster_dns)}   # the pod's resolv.conf is the infra's
        config: dict[str, Any] = {"Image": self.pause_image, "Entrypoint": PAUSE_COMMAND, "Labels": labels,
                                  "HostConfig": host_config}
        if not spec.get("hostNetwork"):
            config["Hostname"] = (spec.get("hostname") or meta["name"])[:63]
        ports = {f"{p.get('containerPort')}/{(p.get('protocol') or 'TCP').lower()}": {}
                 for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
                 for p in c.get("ports") or [] if p.get("containerPort")}
        if ports:
            config["ExposedPorts"] = ports
        try:
            return await self._create(name, config)
        except DockerUnavailable:
            raise
        except DockerError as exc:
            raise ContainerStartError("CreatePodSandboxError", f"Failed to create pod sandbox: {exc}") from None

    async def start_sandbox(self, sid: str) -> ContainerRecord:
        """Start the infra container (its network namespace is made now); its record, with the pod's IP."""
        try:
            await self.api.start(sid)
        except DockerUnavailable:
            raise
        except DockerError as exc:
            raise ContainerStartError("CreatePodSandboxError", f"Failed to create pod sandbox: {exc}") from None
        found = await self.api.inspect(sid)
        if found is None:
            raise ContainerStartError("CreatePodSandboxError", "the pod sandbox vanished as it started")
        record = record_of(found)
        self._records[sid] = (found.get("State") or {}).get("Status", ""), record
        return record

    async def run_container(self, config: ContainerConfig, sandbox: ContainerRecord | None) -> str:
        cid = await self.create_container(config, sandbox)
        await self.start_container(cid)
        return cid

    async def create_container(self, config: ContainerConfig, sandbox: ContainerRecord | None) -> str:
        """Create a container joining the sandbox's namespaces; the sandbox need only be created yet
        (the engine checks that it runs at the container's start)."""
        if config.privileged and not self.allow_privileged:
            raise ContainerStartError("CreateContainerConfigError",
                                      "privileged containers are not allowed on this node "
                                      "(start the agent with --allow-privileged)")
        name = (f"k8s_{config.name}_{config.labels.get(POD_NAME, '')}_{config.labels.get(POD_NAMESPACE, '')}_"
                f"{config.labels.get(POD_UID, '')}_{config.labels.get(RESTART_COUNT, '0')}")
        try:
            return await self._create(name, docker_config(config, sandbox))
        except DockerUnavailable:
            raise
        except DockerError as exc:
            raise ContainerStartError("CreateContainerError", str(exc)) from None

    async def start_container(self, cid: str) -> None:
        try:
            await self.api.start(cid)
        except DockerUnavailable:
            raise
        except DockerError as exc:
            raise ContainerStartError("RunContainerError", str(exc)) from None

    async def _create(self, name: str, config: dict[str, Any]) -> str:
        """Create; a leftover of the same name (an instance whose start failed midway) is removed first."""
        try:
            return await self.api.create(name, config)
        except DockerError as exc:
            if exc.status != 409:
                raise
        found = await self.api.inspect(name)
        if found is not None:
            await self.api.remove(found["Id"])
        return await self.api.create(name, config)

    async def stop(self, cid: str, grace: float) -> None:
        self._ended(cid)   # inspected again until the listing too shows it exited
        t = max(0, math.ceil(grace))
        try:
            await self.api.request("POST", f"/containers/{cid}/stop", params={"t": t}, timeout=t + STOP_SLACK)
        except DockerError as exc:
            if exc.status not in (304, 404):
                raise

    async def remove(self, cid: str) -> None:
        await self.api.remove(cid)
        self._records.pop(cid, None)
        self._ending.discard(cid)

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        code, out, err = await self.api.exec(cid, cmd, timeout=timeout)
        return code, out + err

    async def exec_session(self, cid: str, cmd: list[str], *, tty: bool, stdin: bool) -> DockerExec:
        eid, reader, writer = await self.api.exec_attached(cid, cmd, tty=tty, stdin=stdin)
        return DockerExec(self.api, eid, reader, writer, tty)

    async def attach_session(self, cid: str, *, stdin: bool) -> DockerExec:
        """`kubectl attach`: the container's own streams (stdin only when its spec keeps it open)."""
        found = await self.api.inspect(cid)
        tty = bool(((found or {}).get("Config") or {}).get("Tty"))
        reader, writer = await self.api.hijack(f"/containers/{cid}/attach", {
            "stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if stdin else 0})
        return DockerExec(self.api, "", reader, writer, tty, container=cid)

    async def logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                   since: float | None = None) -> bytes:
        # One call for both streams, interleaved as they were written (what `kubectl logs` shows).
        params: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": timestamps}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = f"{since:.3f}"
        raw = await self.api.request("GET", f"/containers/{cid}/logs", params=params)
        return interleaved(raw if isinstance(raw, bytes) else b"")

    def follow_logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                    since: float | None = None) -> AsyncIterator[bytes]:
        return self.api.follow_logs(cid, tail=tail, timestamps=timestamps, since=since)


def docker_config(c: ContainerConfig, sandbox: ContainerRecord | None) -> dict[str, Any]:
    """A ContainerConfig as the Engine API's container create body."""
    host: dict[str, Any] = {"RestartPolicy": {"Name": "no"}, "ReadonlyRootfs": c.read_only_root,
                            "Privileged": c.privileged}
    if sandbox is not None:
        host["NetworkMode"] = f"container:{sandbox.id}"
        host["IpcMode"] = f"container:{sandbox.id}"
    binds = []
    for m in c.mounts:
        src = os.path.join(m.host_path, m.sub_path) if m.sub_path else m.host_path
        binds.append(f"{src}:{m.container_path}:{'ro' if m.read_only else 'rw'}")
    if binds:
        host["Binds"] = binds
    if c.tmpfs:
        host["Tmpfs"] = {path: (f"size={size}" if size else "") for path, size in c.tmpfs}
    if c.memory_limit:
        host["Memory"] = c.memory_limit
        host["MemorySwap"] = c.memory_limit    # no swap beyond the limit, as the kubelet sets it
    if c.cpu_limit_milli:
        host["CpuPeriod"] = CPU_PERIOD
        host["CpuQuota"] = max(1000, c.cpu_limit_milli * CPU_PERIOD // 1000)
    if c.cpu_request_milli is not None:
        host["CpuShares"] = max(MIN_SHARES, c.cpu_request_milli * 1024 // 1000)
    if c.cap_add:
        host["CapAdd"] = list(c.cap_add)
    if c.cap_drop:
        host["CapDrop"] = list(c.cap_drop)
    config: dict[str, Any] = {"Image": c.image, "Env": [f"{k}={v}" for k, v in c.env], "Labels": c.labels,
                              "HostConfig": host}
    if c.stdin or c.tty:
        config.update({"OpenStdin": c.stdin, "StdinOnce": c.stdin_once, "Tty": c.tty, "AttachStdin": c.stdin})
    if c.command is not None:
        config["Entrypoint"] = list(c.command)
    if c.args is not None:
        config["Cmd"] = list(c.args)
    if c.working_dir:
        config["WorkingDir"] = c.working_dir
    if c.run_as_user is not None:
        config["User"] = str(c.run_as_user) + (f":{c.run_as_group}" if c.run_as_group is not None else "")
    if c.ports and sandbox is None:   # in a pod the ports are the infra container's (Docker refuses them here)
        config["ExposedPorts"] = {f"{port}/{proto.lower()}": {} for port, proto in c.ports}
    if sandbox is None and c.hostname:
        config["Hostname"] = c.hostname
    return config


class DockerExec:
    """One `exec` with its streams attached (a hijacked connection to the engine)."""

    def __init__(self, api: DockerApi, eid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tty: bool, *, container: str = "") -> None:
        self.api, self.eid, self.reader, self.writer, self.tty = api, eid, reader, writer, tty
        self.container = container    # an attach: the exit code is the container's

    async def read(self) -> tuple[int, bytes] | None:
        """(1 stdout | 2 stderr, bytes), or None once the command ended."""
        if self.tty:
            data = await self.reader.read(65536)
            return (1, data) if data else None
        try:
            header = await self.reader.readexactly(8)
            data = await self.reader.readexactly(int.from_bytes(header[4:8], "big"))
        except asyncio.IncompleteReadError:
            return None
        return (2 if header[0] == 2 else 1), data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_stdin(self) -> None:
        # An attach shares the container's stdin with whoever else attaches: its end is not ours to
        # signal (the kubelet leaves it open too unless the spec says stdinOnce).
        if not self.container and self.writer.can_write_eof():
            self.writer.write_eof()

    async def resize(self, height: int, width: int) -> None:
        if self.container:
            await self.api.request("POST", f"/containers/{self.container}/resize", params={"h": height, "w": width})
        else:
            await self.api.exec_resize(self.eid, height, width)

    async def exit_code(self) -> int:
        if self.container:
            found = await self.api.inspect(self.container)
            state = (found or {}).get("State") or {}
            return 0 if state.get("Running") else int(state.get("ExitCode") or 0)
        for _ in range(50):   # the engine records the code a moment after the stream ends
            code = await self.api.exec_exit_code(self.eid)
            if code is not None:
                return int(code)
            await asyncio.sleep(0.02)
        return -1

    def close(self) -> None:
        self.writer.close()


def interleaved(raw: bytes) -> bytes:
    """A multiplexed logs stream's payloads in the order they were written, stdout and stderr alike."""
    out = bytearray()
    i = 0
    while i + 8 <= len(raw):
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out += raw[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out)


def record_of(inspected: dict[str, Any]) -> ContainerRecord:
    """What the agent needs of `docker inspect`."""
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    state = inspected.get("State") or {}
    status = state.get("Status", "")
    if status in ("running", "paused", "restarting"):
        kind = "running"
    elif status in ("exited", "dead"):
        kind = "exited"
    else:
        kind = "created"
    net = inspected.get("NetworkSettings") or {}
    ip = net.get("IPAddress") or next((n.get("IPAddress") for n in (net.get("Networks") or {}).values()
                                       if n.get("IPAddress")), "")
    return ContainerRecord(
        id=inspected["Id"], pod_uid=labels.get(POD_UID, ""), pod_namespace=labels.get(POD_NAMESPACE, ""),
        pod_name=labels.get(POD_NAME, ""), name=labels.get(CONTAINER_NAME, ""), role=labels.get(ROLE, APP),
        restart_count=int(labels.get(RESTART_COUNT, "0") or 0), image=(inspected.get("Config") or {}).get("Image", ""),
        image_id=inspected.get("Image", ""), state=kind,
        exit_code=state.get("ExitCode") if kind == "exited" else None, oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or "", started_at=_time(state.get("StartedAt")),
        finished_at=_time(state.get("FinishedAt")) if kind == "exited" else None,
        ip=ip if labels.get(ROLE) == INFRA else "", spec_hash=labels.get(SPEC_HASH, ""), labels=labels)


def _time(value: str | None) -> str | None:
    """Docker's nanosecond times → Kubernetes' RFC 3339 seconds; its zero time → None."""
    if not value or value.startswith("0001-"):
        return None
    return value[:19] + "Z"


def busybox_rootfs(busybox: str) -> bytes:
    """A tarball of a minimal root filesystem: a static busybox and the applets' links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "var", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "cat", "echo", "ls", "env", "id", "httpd", "nc", "wget", "head", "tail",
                       "dd", "mkdir", "true", "false", "kill", "ps", "hostname", "grep", "test", "printf", "date",
                       "touch", "rm", "seq", "yes", "tr"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for path, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


__all__ = ["DockerRuntime", "GRACE", "INFRA", "PAUSE_IMAGE", "busybox_rootfs", "docker_config", "record_of"]
